import CNetlink
import Glibc

/// An IPv4 address with prefix length, e.g. 198.18.1.2/24.
public struct IPv4Interface: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let prefixLength: Int

    public init(_ text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let length = Int(parts[1]), (0...32).contains(length) else {
            throw LabNetworkError.invalidAddress(text, reason: "expected A.B.C.D/LEN with LEN in 0…32")
        }
        address = try IPv4Address(String(parts[0]))
        prefixLength = length
    }

    public init(address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public var description: String { "\(address)/\(prefixLength)" }

    /// The network this interface is on, e.g. 198.18.1.0/24.
    public var network: IPv4Interface {
        let mask: UInt32 = prefixLength == 0 ? 0 : ~UInt32(0) << (32 - UInt32(prefixLength))
        return IPv4Interface(address: IPv4Address(value: address.value & mask), prefixLength: prefixLength)
    }
}

public struct IPv4Address: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Host byte order.
    public let value: UInt32

    public init(value: UInt32) { self.value = value }

    public init(_ text: String) throws {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else {
            throw LabNetworkError.invalidAddress(text, reason: "expected four dotted octets")
        }
        var value: UInt32 = 0
        for octet in octets {
            guard let byte = UInt8(octet), octet.count <= 3 else {
                throw LabNetworkError.invalidAddress(text, reason: "octet \"\(octet)\" is not in 0…255")
            }
            value = value << 8 | UInt32(byte)
        }
        self.value = value
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    /// 198.18.0.0/15: the lab's own address space (RFC 2544 benchmarking). Lab traffic never leaves it.
    public var isLabAddress: Bool { value & 0xFFFE_0000 == 0xC612_0000 }
}

/// A 48-bit Ethernet address.
public struct MACAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) throws {
        guard bytes.count == 6 else {
            throw LabNetworkError.invalidAddress("\(bytes)", reason: "a MAC address has 6 bytes")
        }
        self.bytes = bytes
    }

    public init(_ text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        guard parts.count == 6, bytes.count == 6 else {
            throw LabNetworkError.invalidAddress(text, reason: "expected six hex pairs like 02:00:c6:12:01:02")
        }
        self.bytes = bytes
    }

    public var description: String { bytes.map { String(format2: $0) }.joined(separator: ":") }
}

extension String {
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
    }
}

/// Owned libnl `nl_addr`, freed on every path.
final class NLAddress {
    let pointer: OpaquePointer

    init(ipv4 interface: IPv4Interface) throws {
        guard let made = nl_addr_build(AF_INET, [interface.address.value.bigEndian].withUnsafeBytes { Array($0) }, 4) else {
            throw SystemCallError("nl_addr_build", errno: ENOMEM)
        }
        nl_addr_set_prefixlen(made, Int32(interface.prefixLength))
        pointer = made
    }

    convenience init(ipv4 address: IPv4Address) throws {
        try self.init(ipv4: IPv4Interface(address: address, prefixLength: 32))
    }

    init(mac: MACAddress) throws {
        guard let made = nl_addr_build(AF_LLC, mac.bytes, 6) else {
            throw SystemCallError("nl_addr_build", errno: ENOMEM)
        }
        pointer = made
    }

    deinit { nl_addr_put(pointer) }
}

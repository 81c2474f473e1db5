import Foundation

/// Self-contained SVG charts for the report (plain text, no scripts, no external fonts; white
/// background so they read on GitHub's dark theme too).
public enum SVGChart {
    public static let latencyFileName = "latency.svg"
    public static let timelineFileName = "probe-timeline.svg"

    static let width = 900.0
    static let labelWidth = 290.0
    static let rightMargin = 110.0
    static let rowHeight = 34.0
    static let top = 64.0
    static let bottom = 46.0

    /// Detection latency per cell: a dot per detected trial, a bar at the median, a diamond at the
    /// expected value (the kernel formula on the fault's clock). Missed trials are counted on the right.
    public static func latency(_ cells: [Cell]) -> String {
        let rows = cells.map { ($0, $0.stats) }
        let values = rows.flatMap { cell, stats in
            cell.results.filter { $0.outcome == .detected || $0.outcome == .falsePositive }.compactMap(\.detectionLatencyS)
                + [stats.expectedS].compactMap { $0 }
        }
        let axis = Axis(lower: 0, upper: max(values.max() ?? 1, 0.001))
        var svg = Canvas(title: "Detection latency per cell", rows: rows.count, axis: axis,
                         xLabel: "seconds from the fault to the client's detection")
        svg.legend([("dot", "#1f77b4", "trial"), ("bar", "#222222", "median"),
                    ("diamond", "#d62728", "expected (kernel formula)"), ("ring", "#d62728", "false positive")])
        for (i, (cell, stats)) in rows.enumerated() {
            let y = svg.rowY(i)
            svg.rowLabel(i, cell)
            let trials = cell.results.enumerated().filter { $0.element.detectionLatencyS != nil
                && ($0.element.outcome == .detected || $0.element.outcome == .falsePositive) }
            for (n, (_, r)) in trials.enumerated() {
                // Spread dots a little vertically so equal latencies stay countable.
                let dy = Double(n % 5 - 2) * 3
                let x = svg.x(r.detectionLatencyS!)
                if r.outcome == .falsePositive {
                    svg.add(##"<circle cx="\##(f(x))" cy="\##(f(y + dy))" r="4.5" fill="none" stroke="#d62728" stroke-width="1.5"/>"##)
                } else {
                    svg.add(##"<circle cx="\##(f(x))" cy="\##(f(y + dy))" r="4" fill="#1f77b4" fill-opacity="0.75"/>"##)
                }
            }
            if let m = stats.latencyMedianS {
                let x = svg.x(m)
                svg.add(##"<line x1="\##(f(x))" y1="\##(f(y - 11))" x2="\##(f(x))" y2="\##(f(y + 11))" stroke="#222222" stroke-width="2.5"/>"##)
            }
            if let e = stats.expectedS {
                let x = svg.x(e)
                svg.add(##"<path d="M \##(f(x)) \##(f(y - 7)) L \##(f(x + 5)) \##(f(y)) L \##(f(x)) \##(f(y + 7)) L \##(f(x - 5)) \##(f(y)) Z" fill="none" stroke="#d62728" stroke-width="1.5"/>"##)
            }
            // Everything without a latency to plot, counted.
            let side = stats.outcomes.filter { $0.key != "detected" && $0.key != "false_positive" }
                .sorted { $0.key < $1.key }.map { "\($0.value) \($0.key.replacingOccurrences(of: "_", with: " "))" }
            if !side.isEmpty { svg.sideNote(i, side.joined(separator: ", ")) }
        }
        return svg.finish()
    }

    /// The representative trial of each cell on one time axis: probes, replies, RSTs, ICMP,
    /// heartbeats and retransmissions as marks, the detection as a black bar.
    public static func probeTimeline(_ cells: [Cell]) -> String {
        let trials = cells.compactMap { cell in cell.representative.map { (cell, $0) } }
        var times: [Double] = [0]
        for (_, r) in trials {
            times += r.timeline.filter { $0.t >= -1 && Self.marked($0.kind) }.map(\.t)
            times += [r.marks.detection, r.marks.bBack].compactMap { $0 }
            if r.marks.detection == nil { times.append(r.marks.deadline ?? r.spec.deadline) }
        }
        let axis = Axis(lower: min(0, times.min() ?? 0), upper: max(times.max() ?? 1, 0.001))
        var svg = Canvas(title: "Probe timeline of representative trials", rows: trials.count, axis: axis,
                         xLabel: "seconds from the fault (A→B marks above the line, B→A and R→A below)")
        svg.legend([("dot", "#1f77b4", "keepalive probe"), ("dot", "#2ca02c", "probe reply"),
                    ("square", "#d62728", "RST"), ("triangle", "#ff7f0e", "ICMP from R"),
                    ("rect", "#9467bd", "heartbeat"), ("tick", "#7f7f7f", "retransmission"),
                    ("bar", "#000000", "detection"), ("dash", "#999999", "deadline")])
        svg.add(##"<line x1="\##(f(svg.x(0)))" y1="\##(f(top - 6))" x2="\##(f(svg.x(0)))" y2="\##(f(svg.plotBottom))" stroke="#d62728" stroke-dasharray="4 3"/>"##)
        svg.add(##"<text x="\##(f(svg.x(0) + 3))" y="\##(f(top - 8))" font-size="11" fill="#d62728">fault</text>"##)
        for (i, (cell, r)) in trials.enumerated() {
            let y = svg.rowY(i)
            svg.rowLabel(i, cell)
            svg.add(##"<line x1="\##(f(svg.x(axis.lower)))" y1="\##(f(y))" x2="\##(f(svg.x(axis.upper)))" y2="\##(f(y))" stroke="#dddddd"/>"##)
            if let back = r.marks.bBack {
                let x = svg.x(back)
                svg.add(##"<line x1="\##(f(x))" y1="\##(f(y - 13))" x2="\##(f(x))" y2="\##(f(y + 13))" stroke="#2ca02c" stroke-dasharray="3 2"/>"##)
                svg.add(##"<text x="\##(f(x + 2))" y="\##(f(y - 8))" font-size="10" fill="#2ca02c">B back</text>"##)
            }
            for e in r.timeline where e.t >= axis.lower && Self.marked(e.kind) {
                svg.add(mark(e, x: svg.x(e.t), y: y))
            }
            if let d = r.marks.detection {
                let x = svg.x(d)
                svg.add(##"<line x1="\##(f(x))" y1="\##(f(y - 12))" x2="\##(f(x))" y2="\##(f(y + 12))" stroke="#000000" stroke-width="2.5"/>"##)
                svg.add(##"<text x="\##(f(x + 4))" y="\##(f(y + 13))" font-size="10">\##(xmlEscape(r.detectedBy ?? "detected"))</text>"##)
            } else {
                let deadline = r.marks.deadline ?? r.spec.deadline
                let x = svg.x(deadline)
                svg.add(##"<line x1="\##(f(x))" y1="\##(f(y - 12))" x2="\##(f(x))" y2="\##(f(y + 12))" stroke="#999999" stroke-dasharray="2 2"/>"##)
                svg.sideNote(i, r.outcome.rawValue)
            }
        }
        return svg.finish()
    }

    private static func marked(_ kind: SegmentKind) -> Bool {
        [.keepaliveProbe, .keepaliveReply, .rst, .icmp, .heartbeat, .retransmission, .windowProbe].contains(kind)
    }

    private static func mark(_ e: TimelineEntry, x: Double, y: Double) -> String {
        let up = e.direction == .aToB && e.kind != .icmp
        let my = up ? y - 6 : y + 6
        switch e.kind {
        case .keepaliveProbe, .windowProbe:
            return ##"<circle cx="\##(f(x))" cy="\##(f(my))" r="3.5" fill="#1f77b4"/>"##
        case .keepaliveReply:
            return ##"<circle cx="\##(f(x))" cy="\##(f(my))" r="3.5" fill="#2ca02c"/>"##
        case .rst:
            return ##"<rect x="\##(f(x - 3.5))" y="\##(f(my - 3.5))" width="7" height="7" fill="#d62728"/>"##
        case .icmp:
            return ##"<path d="M \##(f(x - 4)) \##(f(my - 3)) L \##(f(x + 4)) \##(f(my - 3)) L \##(f(x)) \##(f(my + 4)) Z" fill="#ff7f0e"/>"##
        case .heartbeat:
            return ##"<rect x="\##(f(x - 2))" y="\##(f(my - 4))" width="4" height="8" fill="#9467bd"/>"##
        default:
            return ##"<line x1="\##(f(x))" y1="\##(f(my - 4))" x2="\##(f(x))" y2="\##(f(my + 4))" stroke="#7f7f7f" stroke-width="1.5"/>"##
        }
    }
}

/// "12.5" with at most 2 decimals: coordinates.
private func f(_ v: Double) -> String {
    let r = (v * 100).rounded() / 100
    return r == r.rounded() ? String(Int(r)) : String(r)
}

/// A linear axis with "nice" ticks (1, 2 or 5 × 10ⁿ).
struct Axis {
    var lower: Double
    var upper: Double
    var step: Double

    init(lower: Double, upper: Double) {
        let span = max(upper - lower, 1e-3)
        let raw = span / 6
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        self.step = step
        self.lower = (lower / step).rounded(.down) * step
        self.upper = (upper / step).rounded(.up) * step
    }

    var ticks: [Double] {
        var out: [Double] = []
        var t = lower
        while t <= upper + step / 1000 {
            out.append(abs(t) < step / 1000 ? 0 : t)
            t += step
        }
        return out
    }
}

/// The frame both charts share: title, legend, rows with labels, x axis with ticks and grid.
private struct Canvas {
    let title: String
    let rows: Int
    let axis: Axis
    let xLabel: String
    var body: [String] = []

    init(title: String, rows: Int, axis: Axis, xLabel: String) {
        self.title = title
        self.rows = rows
        self.axis = axis
        self.xLabel = xLabel
    }

    var plotLeft: Double { SVGChart.labelWidth }
    var plotRight: Double { SVGChart.width - SVGChart.rightMargin }
    var plotBottom: Double { SVGChart.top + Double(max(rows, 1)) * SVGChart.rowHeight }
    var height: Double { plotBottom + SVGChart.bottom }

    func x(_ v: Double) -> Double {
        plotLeft + (v - axis.lower) / (axis.upper - axis.lower) * (plotRight - plotLeft)
    }

    func rowY(_ i: Int) -> Double { SVGChart.top + (Double(i) + 0.5) * SVGChart.rowHeight }

    mutating func add(_ element: String) { body.append(element) }

    /// Two lines: the policy, then fault · workload in grey.
    mutating func rowLabel(_ i: Int, _ cell: Cell) {
        func clip(_ s: String, _ n: Int) -> String { s.count > n ? String(s.prefix(n - 1)) + "…" : s }
        let y = rowY(i)
        add(##"<text x="\##(f(plotLeft - 8))" y="\##(f(y - 2))" text-anchor="end">\##(xmlEscape(clip(cell.policyName, 44)))</text>"##)
        add(##"<text x="\##(f(plotLeft - 8))" y="\##(f(y + 11))" text-anchor="end" font-size="10.5" fill="#666666">\##(xmlEscape(clip(cell.fault + " · " + cell.workload, 50)))</text>"##)
    }

    mutating func sideNote(_ i: Int, _ text: String) {
        add(##"<text x="\##(f(plotRight + 8))" y="\##(f(rowY(i) + 4))" fill="#555555">\##(xmlEscape(text))</text>"##)
    }

    /// Legend entries: (shape, colour, label), laid out in one line under the title.
    mutating func legend(_ entries: [(String, String, String)]) {
        var x = 20.0
        let y = 42.0
        for (shape, colour, label) in entries {
            switch shape {
            case "bar": add(##"<line x1="\##(f(x + 4))" y1="\##(f(y - 7))" x2="\##(f(x + 4))" y2="\##(f(y + 5))" stroke="\##(colour)" stroke-width="2.5"/>"##)
            case "diamond": add(##"<path d="M \##(f(x + 4)) \##(f(y - 6)) L \##(f(x + 8)) \##(f(y - 1)) L \##(f(x + 4)) \##(f(y + 4)) L \##(f(x)) \##(f(y - 1)) Z" fill="none" stroke="\##(colour)" stroke-width="1.5"/>"##)
            case "ring": add(##"<circle cx="\##(f(x + 4))" cy="\##(f(y - 1))" r="4" fill="none" stroke="\##(colour)" stroke-width="1.5"/>"##)
            case "square": add(##"<rect x="\##(f(x))" y="\##(f(y - 5))" width="7" height="7" fill="\##(colour)"/>"##)
            case "triangle": add(##"<path d="M \##(f(x)) \##(f(y - 5)) L \##(f(x + 8)) \##(f(y - 5)) L \##(f(x + 4)) \##(f(y + 2)) Z" fill="\##(colour)"/>"##)
            case "rect": add(##"<rect x="\##(f(x + 2))" y="\##(f(y - 5))" width="4" height="8" fill="\##(colour)"/>"##)
            case "dash": add(##"<line x1="\##(f(x + 4))" y1="\##(f(y - 7))" x2="\##(f(x + 4))" y2="\##(f(y + 5))" stroke="\##(colour)" stroke-dasharray="2 2"/>"##)
            case "tick": add(##"<line x1="\##(f(x + 4))" y1="\##(f(y - 5))" x2="\##(f(x + 4))" y2="\##(f(y + 3))" stroke="\##(colour)" stroke-width="1.5"/>"##)
            default: add(##"<circle cx="\##(f(x + 4))" cy="\##(f(y - 1))" r="3.5" fill="\##(colour)"/>"##)
            }
            add(##"<text x="\##(f(x + 12))" y="\##(f(y + 3))" font-size="11">\##(xmlEscape(label))</text>"##)
            x += 22 + Double(label.count) * 6.2
        }
    }

    func finish() -> String {
        var out: [String] = []
        out.append(##"<?xml version="1.0" encoding="UTF-8"?>"##)
        out.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(f(SVGChart.width))" height="\##(f(height))" viewBox="0 0 \##(f(SVGChart.width)) \##(f(height))" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="#222222">"##)
        out.append(##"<rect x="0" y="0" width="\##(f(SVGChart.width))" height="\##(f(height))" fill="#ffffff"/>"##)
        out.append(##"<text x="20" y="22" font-size="15" font-weight="bold">\##(xmlEscape(title))</text>"##)
        // Grid and ticks.
        for t in axis.ticks {
            let gx = x(t)
            out.append(##"<line x1="\##(f(gx))" y1="\##(f(SVGChart.top))" x2="\##(f(gx))" y2="\##(f(plotBottom))" stroke="#eeeeee"/>"##)
            out.append(##"<line x1="\##(f(gx))" y1="\##(f(plotBottom))" x2="\##(f(gx))" y2="\##(f(plotBottom + 5))" stroke="#222222"/>"##)
            out.append(##"<text x="\##(f(gx))" y="\##(f(plotBottom + 18))" text-anchor="middle" font-size="11">\##(fmtNumber(t))</text>"##)
        }
        out.append(##"<line x1="\##(f(plotLeft))" y1="\##(f(plotBottom))" x2="\##(f(plotRight))" y2="\##(f(plotBottom))" stroke="#222222"/>"##)
        out.append(##"<line x1="\##(f(plotLeft))" y1="\##(f(SVGChart.top))" x2="\##(f(plotLeft))" y2="\##(f(plotBottom))" stroke="#222222"/>"##)
        out.append(##"<text x="\##(f((plotLeft + plotRight) / 2))" y="\##(f(plotBottom + 36))" text-anchor="middle">\##(xmlEscape(xLabel))</text>"##)
        if rows == 0 {
            out.append(##"<text x="\##(f((plotLeft + plotRight) / 2))" y="\##(f(SVGChart.top + 20))" text-anchor="middle" fill="#555555">no trials</text>"##)
        }
        out += body
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}

import Foundation
import KeepaliveNet

/// Writes a run's report directory: report.md, the two SVG charts next to it, summary.json and junit.xml.
public enum ReportWriter {
    public struct Files: Sendable {
        public var report: URL
        public var latencyChart: URL
        public var timelineChart: URL
        public var summary: URL
        public var junit: URL
    }

    /// Creates `directory` if needed and overwrites the five files in it.
    @discardableResult
    public static func write(_ input: RunReportInput, to directory: URL) throws -> Files {
        try FileIO.createDirectories(directory.path, operation: "create the report directory")
        let files = Files(report: directory.appendingPathComponent("report.md"),
                          latencyChart: directory.appendingPathComponent(SVGChart.latencyFileName),
                          timelineChart: directory.appendingPathComponent(SVGChart.timelineFileName),
                          summary: directory.appendingPathComponent("summary.json"),
                          junit: directory.appendingPathComponent("junit.xml"))
        try write(MarkdownReport.render(input, chartsPrefix: ""), to: files.report)
        try write(SVGChart.latency(input.cells), to: files.latencyChart)
        try write(SVGChart.probeTimeline(input.cells), to: files.timelineChart)
        try FileIO.write(Array(SummaryJSON(input).encoded()), to: files.summary.path, operation: "write the run's summary")
        try write(JUnitReport.render(input), to: files.junit)
        return files
    }

    private static func write(_ text: String, to url: URL) throws {
        try FileIO.write(text, to: url.path, operation: "write \(url.lastPathComponent)")
    }
}

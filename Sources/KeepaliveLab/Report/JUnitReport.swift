/// junit.xml: one testcase per expectation, a `<failure>` for each failed one, so CI systems show
/// expectations as tests; an expectation not run here (another shard's cell, an interrupted run)
/// is `<skipped>`, not failed. Each trial that could not run is a testcase with an `<error>`: CI
/// shows a broken machine as an error, not as a policy that missed. One testsuite per cell.
public enum JUnitReport {
    public static func render(_ input: RunReportInput) -> String {
        let all = input.cells.flatMap(\.expectations)
        let failures = all.filter(\.failed).count
        let skipped = all.filter { $0.notRun != nil }.count
        let errors = input.cells.reduce(0) { $0 + $1.errors.count }
        var x: [String] = [#"<?xml version="1.0" encoding="UTF-8"?>"#]
        x.append(#"<testsuites name="\#(xmlEscape("keepalive-lab: " + input.lab))" tests="\#(all.count + errors)" failures="\#(failures)" errors="\#(errors)" skipped="\#(skipped)">"#)
        for cell in input.cells {
            let fails = cell.expectations.filter(\.failed).count
            let skips = cell.expectations.filter { $0.notRun != nil }.count
            x.append(#"  <testsuite name="\#(xmlEscape(cell.key.description))" tests="\#(cell.expectations.count + cell.errors.count)" failures="\#(fails)" errors="\#(cell.errors.count)" skipped="\#(skips)">"#)
            x.append(#"    <properties>"#)
            x.append(#"      <property name="policy" value="\#(xmlEscape(cell.policySummary))"/>"#)
            x.append(#"      <property name="trials" value="\#(cell.results.count)"/>"#)
            x.append(#"      <property name="outcomes" value="\#(xmlEscape(cell.stats.outcomeSummary))"/>"#)
            x.append(#"      <property name="kernel" value="\#(xmlEscape(input.kernel))"/>"#)
            x.append(#"    </properties>"#)
            let classname = ["keepalive-lab", input.lab, cell.policyName, cell.fault, cell.workload].joined(separator: ".")
            for e in cell.expectations {
                let open = #"    <testcase classname="\#(xmlEscape(classname))" name="\#(xmlEscape(e.name))" time="0""#
                if let reason = e.notRun {
                    x.append(open + ">")
                    x.append(#"      <skipped message="\#(xmlEscape("NOT RUN (\(reason))"))"/>"#)
                    x.append("    </testcase>")
                } else if e.passed {
                    x.append(open + "/>")
                } else {
                    x.append(open + ">")
                    x.append(#"      <failure message="\#(xmlEscape(e.detail))" type="expectation">\#(xmlEscape(e.detail))</failure>"#)
                    x.append("    </testcase>")
                }
            }
            for e in cell.errors {
                x.append(#"    <testcase classname="\#(xmlEscape(classname))" name="\#(xmlEscape("\(cell.key.description): trial \(e.trial)"))" time="0">"#)
                x.append(#"      <error message="\#(xmlEscape(e.message))" type="trial-error">\#(xmlEscape(e.message))</error>"#)
                x.append("    </testcase>")
            }
            x.append("  </testsuite>")
        }
        x.append("</testsuites>")
        return x.joined(separator: "\n") + "\n"
    }
}

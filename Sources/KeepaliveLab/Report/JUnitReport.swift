/// junit.xml: one testcase per expectation, a `<failure>` for each failed one, so CI systems show
/// expectations as tests. One testsuite per cell.
public enum JUnitReport {
    public static func render(_ input: RunReportInput) -> String {
        let all = input.cells.flatMap(\.expectations)
        let failures = all.filter { !$0.passed }.count
        var x: [String] = [#"<?xml version="1.0" encoding="UTF-8"?>"#]
        x.append(#"<testsuites name="\#(xmlEscape("keepalive-lab: " + input.lab))" tests="\#(all.count)" failures="\#(failures)" errors="0">"#)
        for cell in input.cells {
            let fails = cell.expectations.filter { !$0.passed }.count
            x.append(#"  <testsuite name="\#(xmlEscape(cell.key.description))" tests="\#(cell.expectations.count)" failures="\#(fails)" errors="0" skipped="0">"#)
            x.append(#"    <properties>"#)
            x.append(#"      <property name="policy" value="\#(xmlEscape(cell.policySummary))"/>"#)
            x.append(#"      <property name="trials" value="\#(cell.results.count)"/>"#)
            x.append(#"      <property name="outcomes" value="\#(xmlEscape(cell.stats.outcomeSummary))"/>"#)
            x.append(#"      <property name="kernel" value="\#(xmlEscape(input.kernel))"/>"#)
            x.append(#"    </properties>"#)
            let classname = ["keepalive-lab", input.lab, cell.policyName, cell.fault, cell.workload].joined(separator: ".")
            for e in cell.expectations {
                let open = #"    <testcase classname="\#(xmlEscape(classname))" name="\#(xmlEscape(e.name))" time="0""#
                if e.passed {
                    x.append(open + "/>")
                } else {
                    x.append(open + ">")
                    x.append(#"      <failure message="\#(xmlEscape(e.detail))" type="expectation">\#(xmlEscape(e.detail))</failure>"#)
                    x.append("    </testcase>")
                }
            }
            x.append("  </testsuite>")
        }
        x.append("</testsuites>")
        return x.joined(separator: "\n") + "\n"
    }
}

// Parses TraceQL and LogQL queries with Grafana's own grammars (@grafana/lezer-traceql,
// @grafana/lezer-logql: what Grafana's query editors use) and prints, for each, the syntax
// errors found and the attribute / label names it uses (tests/test_grafana.py).
//
// stdin: [{"lang": "traceql" | "logql", "query": "..."}]; stdout: [{"errors": [...],
// "names": [...]}] in the same order.
import { parser as traceql } from "@grafana/lezer-traceql";
import { parser as logql } from "@grafana/lezer-logql";

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (d) => { text += d; });
  process.stdin.on("end", () => resolve(text));
}));

function analyse(lang, query) {
  const tree = (lang === "traceql" ? traceql : logql).parse(query);
  const errors = [];
  const names = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push(`${node.from}: ${JSON.stringify(query.slice(node.from, node.from + 20))}`);
      }
      if (lang === "traceql" && node.name === "AttributeField") {
        // `span.aibom.drift`, `resource.service.name`: the scope and the attribute's name.
        names.push(query.slice(node.from, node.to).trim());
      }
      if (lang === "logql" && node.name === "Identifier") {
        names.push(query.slice(node.from, node.to));
      }
    },
  });
  return { errors, names };
}

console.log(JSON.stringify(input.map(({ lang, query }) => analyse(lang, query))));

// An MCP client on the official TypeScript SDK (npm @modelcontextprotocol/sdk) over stdio, for
// runbom's MCP tests: initialize, tools/list, one tools/call that succeeds and one the server
// answers with isError, against the Python server of tests/mcp_workload.py (argv: python
// executable, path of mcp_workload.py). Prints one JSON line with its pid and what it saw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [python, workload] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: python, args: [workload, "server"] });
const client = new Client({ name: "runbom-test-node-client", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
const calls = [];
for (const [name, args] of [["add", { a: 2, b: 3 }], ["fail", {}]]) {
  const result = await client.callTool({ name, arguments: args });
  calls.push({ tool: name, is_error: Boolean(result.isError) });
}
await client.close();
console.log(JSON.stringify({
  pid: process.pid,
  server_name: client.getServerVersion()?.name,
  tools: tools.tools.map((t) => t.name),
  calls,
}));

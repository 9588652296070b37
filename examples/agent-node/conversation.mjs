// The agent loop of the Node reference agent, as in the Python agent's conversation.py.
//
// A conversation is one `invoke_agent support-agent` span (root of its trace). Inside it the
// agent alternates `chat gpt-4o-mini` spans (a chat-completions call with the `openai` package,
// the span being the HTTP client: the request's `traceparent` names it) and one
// `execute_tool <name>` span per tool call the model asks for, until the model answers without
// tool calls. Attributes follow the OpenTelemetry GenAI semantic conventions; the opt-in content
// attributes are set unless content capture is off, truncated, and never hold the API key.

import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace } from "@opentelemetry/api";
import OpenAI from "openai";

import { AGENT_NAME, PROVIDER, systemPrompt } from "./scenarios.mjs";
import { nativeThreadId } from "./telemetry.mjs";
import { DESCRIPTIONS, TOOL_SPECS, Tools, inSpan } from "./tools.mjs";
import { notingFetch } from "./transport.mjs";

const MAX_ATTRIBUTE = 2048;
const clip = (text) => (text.length <= MAX_ATTRIBUTE ? text : `${text.slice(0, MAX_ATTRIBUTE)}…[truncated]`);

export class AgentError extends Error {
  name = "AgentError";
}

export class Agent {
  constructor(config, tracer, recorder) {
    this.config = config;
    this.tracer = tracer;
    this.recorder = recorder;
    this.tools = new Tools(config, tracer, recorder);
    this.fetch = notingFetch(recorder);
    // No retries: one model call is one request, as the ground truth counts them.
    this.openai = new OpenAI({ apiKey: config.apiKey, baseURL: config.llmUrl, maxRetries: 0,
      timeout: 30000, fetch: this.fetch });
  }

  /** Answers one user request; resolves the final answer text. */
  async converse(conv) {
    const cfg = this.config;
    const conversationId = `${AGENT_NAME}-${process.pid}-${conv.index}`;
    const attributes = { "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
      "gen_ai.provider.name": PROVIDER, "gen_ai.request.model": cfg.model,
      "gen_ai.conversation.id": conversationId };
    const messages = [
      { role: "system", content: systemPrompt(cfg.dataDir, cfg.ticketingUrl) },
      { role: "user", content: conv.prompt }];
    if (cfg.captureContent) attributes["gen_ai.input.messages"] = JSON.stringify([messages[1]]);
    return inSpan(this.tracer, `invoke_agent ${AGENT_NAME}`, { kind: SpanKind.INTERNAL, attributes },
      ROOT_CONTEXT, async (span) => {
        const ctx = span.spanContext();
        this.recorder.conversation({ index: conv.index, scenario: conv.scenario,
          ticket: conv.ticket, customer: conv.customer, prompt: conv.prompt,
          trace_id: ctx.traceId, root_span_id: ctx.spanId, thread_id: nativeThreadId(),
          conversation_id: conversationId });
        for (let turn = 0; turn < cfg.maxTurns; turn += 1) {
          const reply = await this.chat(messages, conversationId);
          messages.push(reply);
          const calls = reply.tool_calls ?? [];
          if (!calls.length) {
            const answer = String(reply.content ?? "");
            if (cfg.captureContent) {
              span.setAttribute("gen_ai.output.messages",
                JSON.stringify([{ role: "assistant", content: clip(answer) }]));
            }
            return answer;
          }
          for (const call of calls) {
            messages.push({ role: "tool", tool_call_id: call.id, content: await this.tool(call) });
          }
        }
        throw new AgentError(`no answer after ${cfg.maxTurns} model calls`);
      });
  }

  async chat(messages, conversationId) {
    const cfg = this.config;
    const u = new URL(cfg.llmUrl);
    const attributes = { "gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER,
      "gen_ai.request.model": cfg.model, "gen_ai.request.temperature": 0.0,
      "gen_ai.conversation.id": conversationId, "server.address": u.hostname,
      "server.port": Number(u.port) || 443 };
    return inSpan(this.tracer, `chat ${cfg.model}`, { kind: SpanKind.CLIENT, attributes },
      context.active(), async (span) => {
        const headers = {};
        propagation.inject(context.active(), headers); // traceparent names this chat span
        let data;
        try {
          data = await this.openai.chat.completions.create({ model: cfg.model, messages,
            tools: TOOL_SPECS, tool_choice: "auto", temperature: 0 }, { headers });
        } catch (e) {
          if (e instanceof OpenAI.APIError && e.status !== undefined) {
            span.setAttribute("error.type", String(e.status));
            throw new AgentError(`model call failed with HTTP ${e.status}: ${String(e.message).slice(0, 200)}`);
          }
          throw e;
        } finally {
          this.fetch.takeNote(headers.traceparent);
        }
        const usage = data.usage ?? {};
        span.setAttributes({
          "gen_ai.response.model": data.model, "gen_ai.response.id": data.id,
          "gen_ai.response.finish_reasons": data.choices.map((c) => c.finish_reason),
          "gen_ai.usage.input_tokens": Number(usage.prompt_tokens ?? 0),
          "gen_ai.usage.output_tokens": Number(usage.completion_tokens ?? 0) });
        return data.choices[0].message;
      });
  }

  async tool(call) {
    const name = String(call.function.name);
    const args = String(call.function.arguments || "{}");
    const attributes = { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
      "gen_ai.tool.call.id": String(call.id), "gen_ai.tool.type": "function",
      "gen_ai.tool.description": DESCRIPTIONS[name] ?? "" };
    if (this.config.captureContent) attributes["gen_ai.tool.call.arguments"] = clip(args);
    return inSpan(this.tracer, `execute_tool ${name}`, { kind: SpanKind.INTERNAL, attributes },
      context.active(), async (span) => {
        let result;
        try {
          result = String(await this.tools.run(name, JSON.parse(args)));
        } catch (e) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: `${e.name}: ${e.message}` });
          span.setAttribute("error.type", e.name);
          result = `error: ${e.message}`;
        }
        if (this.config.captureContent) span.setAttribute("gen_ai.tool.call.result", clip(result));
        return result;
      });
  }
}

// Re-exported for agent.mjs: the tracer the agent's spans come from.
export const tracerOf = () => trace.getTracer("runbom.reference_agent", "0.1.0");

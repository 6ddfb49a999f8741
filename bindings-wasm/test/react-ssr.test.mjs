// sockline/react in server rendering: Node without any DOM (no `window`, no `document`) and
// without ever loading the wasm. Importing the module and rendering the provider, every hook and
// every component neither throws nor connects; the children see no client and status `idle`.
import { test } from "node:test";
import assert from "node:assert/strict";

import { createElement as h } from "react";
import { renderToString } from "react-dom/server";

import {
  WebSocketProvider,
  useWebSocket,
  useConnectionStatus,
  useRealtimeMessaging,
  useProjectWebSocket,
  useStreamingResponse,
  useTypingIndicators,
  ConnectionStatus,
  TypingIndicator,
  StreamingResponse,
} from "../dist/react.js";

test("server rendering: no window, no wasm, no connection; a null client and status idle", () => {
  assert.equal(typeof window, "undefined");
  assert.equal(typeof document, "undefined");
  let sockets = 0;
  class CountingWebSocket {
    constructor() {
      sockets += 1;
    }
  }
  const seen = {};
  function Hooks() {
    seen.client = useWebSocket();
    seen.status = useConnectionStatus({ countdown: true });
    seen.messaging = useRealtimeMessaging(["chat"]);
    seen.project = useProjectWebSocket(1);
    seen.stream = useStreamingResponse({ streamId: "s1" });
    seen.typing = useTypingIndicators(1);
    return h("p", { id: "hooks" }, `status ${seen.status.status}`);
  }
  const html = renderToString(
    h(
      WebSocketProvider,
      { url: "ws://hub.test/ws", userId: "ann", WebSocket: CountingWebSocket, reconnect: { initialMs: 10 } },
      h(Hooks),
      h(ConnectionStatus, { variant: "compact" }),
      h(ConnectionStatus, { variant: "detailed" }),
      h(TypingIndicator, { projectId: 1 }),
      h(StreamingResponse, { streamId: "s1" }),
    ),
  );
  assert.equal(sockets, 0, "nothing connects");
  assert.equal(seen.client, null);
  assert.deepEqual(seen.status, {
    status: "idle",
    attempt: 0,
    reason: null,
    nextRetry: null,
    retryInMs: null,
    terminal: true,
    offline: false,
  });
  assert.equal(seen.messaging.connectionStatus, "idle");
  assert.deepEqual(seen.messaging.messages, []);
  assert.deepEqual({ ...seen.project, sendUpdate: undefined }, {
    version: undefined,
    syncState: null,
    presence: [],
    state: undefined,
    sendUpdate: undefined,
  });
  assert.deepEqual({ ...seen.stream, interrupt: undefined }, {
    content: "",
    state: undefined,
    isStreaming: false,
    error: null,
    interrupt: undefined,
  });
  assert.deepEqual(seen.typing.typingUsers, []);
  // Typing and interrupting without a client are nothing to do, not errors.
  seen.typing.startTyping();
  seen.stream.interrupt();
  assert.match(html, /status idle/);
  assert.match(html, /class="sockline-status sockline-status-compact sockline-status-idle"/);
  assert.match(html, />Not connected</);
  assert.match(html, /class="sockline-typing sockline-typing-idle"/);
  assert.match(html, /class="sockline-stream"/);
  assert.doesNotMatch(html, /sockline-status-reconnect/, "no button without a client");
});

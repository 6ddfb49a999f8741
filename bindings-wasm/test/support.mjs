// What the package's tests (and the Node benchmark) share besides the hub (hub.mjs): the code of
// the SocklineError a call throws, and a WebSocket fed by hand.
import assert from "node:assert/strict";

import { SocklineError } from "../dist/index.js";

/** The `code` of the `SocklineError` that `f` throws (with a message, as every refusal has),
 *  or "no error". */
export function errorCode(f) {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof SocklineError && e instanceof Error, `${e}`);
    assert.ok(e.message.length > 0, `${e.code} has a message`);
    return e.code;
  }
  return "no error";
}

/** A WebSocket a test feeds by hand (`FedWebSocket.last` is the newest); what is sent is kept. */
export class FedWebSocket {
  static last;
  readyState = 0;
  bufferedAmount = 0;
  binaryType = "blob";
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  sent = [];
  constructor() {
    FedWebSocket.last = this;
  }
  send(text) {
    this.sent.push(text);
  }
  close() {}
}

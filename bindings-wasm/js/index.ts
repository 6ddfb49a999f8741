// sockline for JavaScript: the deterministic Rust session compiled to wasm, and the thin browser
// driver around it. Every protocol decision is the core's; this package moves bytes, time and
// page signals in, and carries out what the core asks.

export { ready, Session, SocklineError, isTerminalState, isFinalStreamState } from "./session.js";
export type { ErrorCode } from "./session.js";
export type {
  SessionOptions,
  OutgoingMessage,
  Envelope,
  SessionEvent,
  StatusEvent,
  State,
  StreamState,
  DropReason,
  Stats,
  Output,
} from "./session.js";
export { SocklineClient, getWebSocketService } from "./client.js";
export type {
  ClientOptions,
  ServiceOptions,
  StorageLike,
  MessageHandler,
  StatusHandler,
  EventHandler,
  Off,
} from "./client.js";
export { browserClock, randomSeed } from "./host.js";
export type { Clock, WebSocketLike, WebSocketConstructor } from "./host.js";

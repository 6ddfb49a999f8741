// The seed's /demo/websocket page, built on sockline/react: connection status, a live message
// log with a send box, a project panel (version, presence), typing indicators and an agent answer
// streaming in. Query parameters (for trying things out, and for the browser tests):
// `user`, `project`, `heartbeat` (ms), `reconnectMs`, `strict=1` (React.StrictMode), `url`.

import { StrictMode, useEffect, useState, type FormEvent } from "react";
import { createRoot } from "react-dom/client";
import {
  ConnectionStatus,
  StreamingResponse,
  TypingIndicator,
  WebSocketProvider,
  useProjectWebSocket,
  useTypingIndicators,
  useWebSocket,
} from "../js/react.js";

const params = new URLSearchParams(location.search);
const user = params.get("user") ?? `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
const project = Number(params.get("project") ?? 1);
const heartbeat = params.get("heartbeat");
const url = params.get("url") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const reconnectMs = params.get("reconnectMs");
const options = {
  url,
  userId: user,
  ...(heartbeat !== null && { heartbeat: { intervalMs: Number(heartbeat) } }),
  ...(reconnectMs !== null && {
    reconnect: { initialMs: Number(reconnectMs), maxMs: Math.max(Number(reconnectMs), 1000) },
  }),
};

/** Keeps every event on `window.socklineEvents` (the browser tests read the page's history). */
function EventRecorder() {
  const client = useWebSocket();
  useEffect(() => {
    if (client === null) return;
    const w = window as unknown as { socklineEvents?: unknown[] };
    w.socklineEvents ??= [];
    return client.onEvent((e) => {
      if (e.kind !== "message") w.socklineEvents!.push(e);
    });
  }, [client]);
  return null;
}

/** One line of the log: a received message, or one of ours with its delivery state. */
interface Line {
  key: string;
  from: string;
  text: string;
  state?: "sending" | "delivered" | "dropped";
}

/** The project's chat as one list: what arrives, and what we sent (acked by the hub, or not). */
function useChatLog(): [Line[], (text: string) => void] {
  const client = useWebSocket();
  const [lines, setLines] = useState<Line[]>([]);
  useEffect(() => {
    if (client === null) return;
    const add = (line: Line) => setLines((l) => [...l, line].slice(-200));
    const mark = (id: string, state: Line["state"]) =>
      setLines((l) => l.map((x) => (x.key === id ? { ...x, state } : x)));
    const offMessages = client.subscribe(
      "chat",
      (m) => {
        const d = m.data as { text?: string; from?: string };
        add({ key: m.id ?? `r${Math.random()}`, from: d.from ?? "?", text: d.text ?? "" });
      },
      { projectId: project },
    );
    const offEvents = client.onEvent((e) => {
      if (e.kind === "acked") mark(String(e["id"]), "delivered");
      if (e.kind === "dropped") mark(String(e["id"]), "dropped");
    });
    return () => {
      offMessages();
      offEvents();
    };
  }, [client]);
  const send = (text: string) => {
    if (client === null) return;
    // at-least-once: a message written while offline waits in the outbox (and across a reload).
    const id = client.sendMessage({ type: "chat", data: { text, from: user }, projectId: project, delivery: "at_least_once" });
    setLines((l) => [...l, { key: id, from: user, text, state: "sending" as const }].slice(-200));
  };
  return [lines, send];
}

function MessageLog() {
  const [lines, send] = useChatLog();
  const { startTyping, stopTyping } = useTypingIndicators(project);
  const [text, setText] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (text.trim() === "") return;
    send(text);
    stopTyping();
    setText("");
  };
  return (
    <section className="panel log">
      <h2>Messages</h2>
      <ol className="messages" data-testid="messages">
        {lines.map((m) => (
          <li key={m.key} className={m.from === user ? "mine" : ""}>
            <span className="from">{m.from}</span> <span className="text">{m.text}</span>
            {m.state !== undefined && <span className="state">{m.state === "delivered" ? "✓" : m.state}</span>}
          </li>
        ))}
      </ol>
      <TypingIndicator projectId={project} />
      <form onSubmit={submit} className="send">
        <input
          data-testid="send-input"
          value={text}
          placeholder="Say something…"
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value === "") stopTyping();
            else startTyping();
          }}
        />
        <button type="submit" data-testid="send">
          Send
        </button>
      </form>
      <p className="hint">Open this page in a second window to see typing and presence.</p>
    </section>
  );
}

function ProjectPanel() {
  const { version, syncState, presence, sendUpdate } = useProjectWebSocket(project);
  return (
    <section className="panel project">
      <h2>Project {project}</h2>
      <dl>
        <dt>Version</dt>
        <dd data-testid="version">{version ?? "—"}</dd>
        <dt>State</dt>
        <dd data-testid="sync">{syncState}</dd>
      </dl>
      <h3>Here now</h3>
      <ul className="presence" data-testid="presence">
        {presence.map((p) => (
          <li key={p} className={p === user ? "me" : ""}>
            {p}
            {p === user ? " (you)" : ""}
          </li>
        ))}
      </ul>
      <button onClick={() => sendUpdate({ editedBy: user, at: new Date().toISOString() })}>Edit project</button>
    </section>
  );
}

function AgentPanel() {
  const client = useWebSocket();
  const [streamId, setStreamId] = useState<string | null>(null);
  const [prompt, setPrompt] = useState("How does sockline reconnect?");
  const ask = (e: FormEvent) => {
    e.preventDefault();
    if (client === null) return;
    const id = `answer-${Date.now().toString(36)}`;
    client.sendMessage({ type: "agent_prompt", data: { prompt, streamId: id } });
    setStreamId(id);
  };
  return (
    <section className="panel agent">
      <h2>Agent</h2>
      <form onSubmit={ask} className="send">
        <input value={prompt} onChange={(e) => setPrompt(e.target.value)} data-testid="prompt" />
        <button type="submit" data-testid="ask">
          Ask
        </button>
      </form>
      {streamId !== null && <StreamingResponse key={streamId} streamId={streamId} />}
    </section>
  );
}

function App() {
  return (
    <WebSocketProvider {...options}>
      <EventRecorder />
      <header>
        <h1>
          sockline <small>realtime demo</small>
        </h1>
        <span className="who">
          you are <b data-testid="user">{user}</b>
        </span>
        <ConnectionStatus variant="compact" />
      </header>
      <main>
        <aside>
          <section className="panel status">
            <h2>Connection</h2>
            <ConnectionStatus variant="detailed" />
          </section>
          <ProjectPanel />
        </aside>
        <MessageLog />
        <AgentPanel />
      </main>
    </WebSocketProvider>
  );
}

const root = createRoot(document.getElementById("root")!);
root.render(
  params.get("strict") === "1" ? (
    <StrictMode>
      <App />
    </StrictMode>
  ) : (
    <App />
  ),
);

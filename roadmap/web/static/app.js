// The chat page of `roadmap serve`. No framework and no build step: the DOM, fetch, and a
// small reader for the server-sent events of POST /api/chat.
// Note: model output and document text are untrusted, so they only ever go into textContent;
// no text is ever parsed as HTML, and the page's Content-Security-Policy forbids inline scripts.
"use strict";

const $ = (id) => document.getElementById(id);
let currentThread = null;
let busy = false;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function addMessage(role, text) {
  const item = element("li", `message ${role}`);
  item.append(element("div", "who", role === "human" ? "you" : "assistant"), element("div", "text", text));
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function setThread(thread) {
  currentThread = thread;
  $("thread-label").textContent = thread ? `Conversation ${thread}` : "New conversation";
  for (const button of document.querySelectorAll("#threads button")) {
    button.classList.toggle("current", button.dataset.thread === thread);
  }
}

function showSources(item, sources) {
  const list = element("ol", "sources");
  for (const source of sources) {
    const entry = element("li", "source");
    const details = element("details");
    const page = source.page ? ` (page ${source.page})` : "";
    details.append(element("summary", null, `${source.source}${page}`), element("p", "excerpt", source.text));
    entry.append(details);
    list.append(entry);
  }
  item.append(element("div", "label", "Sources"), list);
}

function stepList(item) {
  let list = item.querySelector("ol.steps");
  if (!list) {
    list = element("ol", "steps");
    item.insertBefore(element("div", "label", "Tool steps"), item.querySelector(".text"));
    item.insertBefore(list, item.querySelector(".text"));
  }
  return list;
}

// Read the response body as server-sent events: blocks of "event: NAME" and "data: JSON" lines.
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

async function errorOf(response) {
  try {
    return (await response.json()).error;
  } catch {
    return `the server answered ${response.status} ${response.statusText}`;
  }
}

async function send(text) {
  const mode = document.querySelector("input[name=mode]:checked").value;
  addMessage("human", text);
  const item = addMessage("ai", "");
  const answer = item.querySelector(".text");
  item.classList.add("streaming");
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, thread: currentThread, mode }),
    });
    if (!response.ok) throw new Error(await errorOf(response));
    for await (const { event, data } of readEvents(response)) {
      if (event === "start") setThread(data.thread);
      else if (event === "token") answer.textContent += data.text;
      else if (event === "plan") stepList(item).append(element("li", "step", `plan: ${data.tools.join(" -> ")}`));
      else if (event === "tool_call") stepList(item).append(element("li", "step", `${data.tool} ${JSON.stringify(data.args)}`));
      else if (event === "tool_result") stepList(item).append(element("li", `step result ${data.status}`, `-> ${data.result}`));
      else if (event === "error") throw new Error(data.error);
      else if (event === "done") {
        answer.textContent = data.answer;
        if (data.question && data.question !== text) item.append(element("div", "label", `Searched for: ${data.question}`));
        if (data.sources.length) showSources(item, data.sources);
      }
    }
  } catch (error) {
    item.classList.add("failed");
    if (!answer.textContent) answer.textContent = "(no answer)";
    showError(`Error: ${error.message}`);
  } finally {
    item.classList.remove("streaming");
    loadThreads();
  }
}

async function loadThreads() {
  try {
    const response = await fetch("/api/threads");
    if (!response.ok) throw new Error(await errorOf(response));
    const list = $("threads");
    list.replaceChildren();
    for (const info of (await response.json()).threads) {
      const button = element("button", null, `${info.thread} (${info.turns})`);
      button.type = "button";
      button.dataset.thread = info.thread;
      button.title = `last updated ${info.updated}`;
      button.addEventListener("click", () => openThread(info.thread));
      const entry = element("li");
      entry.append(button);
      list.append(entry);
    }
    setThread(currentThread);
  } catch (error) {
    showError(`Error: could not list the conversations: ${error.message}`);
  }
}

async function openThread(thread) {
  if (busy) return;
  showError("");
  try {
    const response = await fetch(`/api/threads/${encodeURIComponent(thread)}`);
    if (!response.ok) throw new Error(await errorOf(response));
    $("messages").replaceChildren();
    for (const message of (await response.json()).messages) addMessage(message.role, message.text);
    setThread(thread);
  } catch (error) {
    showError(`Error: ${error.message}`);
  }
}

function startNewThread() {
  if (busy) return;
  $("messages").replaceChildren();
  showError("");
  setThread(null);
  $("message").focus();
}

async function submit(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || busy) return;
  busy = true;
  $("send").disabled = true;
  showError("");
  $("message").value = "";
  try {
    await send(text);
  } finally {
    busy = false;
    $("send").disabled = false;
    $("message").focus();
  }
}

$("composer").addEventListener("submit", submit);
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) submit(event);
});
$("new-thread").addEventListener("click", startNewThread);
loadThreads();

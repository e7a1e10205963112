/* The sandbox console page: a Slack-like channel driven by /api/state and /api/events.
 *
 * Every change in the emulator arrives as a server-sent event; the page then refetches
 * what the acting person sees and patches only the messages that changed. While the event
 * stream is down it polls. Clicks and the message box go to the console API, which sends
 * the bot the same signed requests Slack would.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const app = {
    user: params.get("as") || localStorage.getItem("rollback-console-user") || "alice",
    channel: params.get("channel") || null,
    state: null,
    thread: null,
    dismissed: new Set(),
    selections: {},
    nodes: new Map(),
    live: false,
  };
  const AVATAR_COLORS = ["#4a154b", "#1264a3", "#2eb67d", "#e01e5a", "#ecb22e", "#36c5f0"];
  const SUGGESTIONS = [
    ["/rollback hotel-voice-bot", "open the request form"],
    ["/rollback hotel-voice-bot --severity P1 --reason \"5xx after deploy\"", "request now"],
    ["/rollback status", "what is running"],
    ["/rollback history hotel-voice-bot", "past rollbacks"],
    ["/rollback hotel-voice-bot-fly --severity P0", "the same incident on Fly.io (a new release)"],
    ["/rollback hotel-voice-bot-ecs --severity P0", "on ECS, with the load balancer's health check"],
    ["/rollback history hotel-voice-bot-ecs --revision 3", "a task definition as ECS keeps it"],
    ["/rollback services", "the service catalog"],
    ["/rollback help", "every command"],
  ];

  async function api(path, body) {
    const r = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: app.user, channel: app.channel, ...body }),
    });
    let answer;
    try { answer = await r.json(); } catch (e) { answer = { ok: false, error: `HTTP ${r.status}` }; }
    setTimeout(refresh, 50);
    return answer;
  }

  // ------------------------------------------------------------------------ refresh
  let fetching = false;
  let again = false;
  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const q = new URLSearchParams({ user: app.user });
      if (app.channel) q.set("channel", app.channel);
      const r = await fetch(`/api/state?${q}`);
      const state = await r.json();
      if (r.status === 404 && /unknown (user|channel)/.test(state.error || "")) {
        again = false;  // a stale ?as=, ?channel= or saved name: back to the defaults
        if (/unknown channel/.test(state.error)) app.channel = null;
        setTimeout(() => (/unknown user/.test(state.error) ? switchUser("alice") : refresh()), 0);
        return;
      }
      if (!r.ok) throw new Error(state.error || `HTTP ${r.status}`);
      app.state = state;
      render(state);
    } catch (e) {
      setLive(false, `console unreachable (${e.message})`);
    } finally {
      fetching = false;
      if (again) { again = false; refresh(); }
    }
  }

  function connect() {
    if (!window.EventSource) return;
    const source = new EventSource("/api/events");
    source.addEventListener("hello", () => { setLive(true); refresh(); });
    source.addEventListener("change", refresh);
    source.onerror = () => setLive(false, "reconnecting…");
  }

  function setLive(live, why) {
    app.live = live;
    $("live").textContent = live ? "● live" : `○ ${why || "polling"}`;
    $("live").className = live ? "live on" : "live";
  }
  setInterval(() => { if (!app.live) refresh(); }, 2000);

  // ------------------------------------------------------------------------ render
  function userOf(id) {
    return (app.state.users || []).find((u) => u.id === id || u.name === id);
  }

  function render(state) {
    BlockKit.setDirectory(state.users, state.channels);
    const me = userOf(state.me);
    app.channel = app.channel || state.channel;
    const channel = state.channels.find((c) => c.id === state.channel);
    renderSidebar(state, me);
    $("channel-name").textContent = channel.is_im ? "Rollback Bot" : `# ${channel.name}`;
    $("channel-topic").textContent = channel.topic || "";
    $("composer-input").placeholder = channel.is_im ? "Message Rollback Bot"
      : `Message #${channel.name} as @${me.name} — try /rollback hotel-voice-bot`;
    $("acting").innerHTML = `Acting as <b>@${BlockKit.esc(me.name)}</b>`
      + (me.roles.length ? ` · ${BlockKit.esc(me.roles.join(", "))}` : "");
    const inline = state.ephemerals.filter((e) => !e.thread_ts && !app.dismissed.has(e.ts));
    const items = [...state.messages.map((m) => ({ m, eph: false })),
      ...inline.map((m) => ({ m, eph: true }))].sort((a, b) => Number(a.m.ts) - Number(b.m.ts));
    patchList($("messages"), items, false);
    $("welcome").hidden = items.length > 0;
    renderThread(state);
    Dialogs.showModal(state, api);
  }

  function renderSidebar(state, me) {
    const chans = state.channels.filter((c) => c.members.includes(me.id)
      && (!c.is_im || c.members.length === 1));
    $("channels").replaceChildren(...chans.map((c) => {
      const a = document.createElement("a");
      a.className = `chan${c.id === state.channel ? " active" : ""}`;
      a.textContent = c.is_im ? "🤖 Rollback Bot" : `# ${c.name}`;
      a.href = "#";
      a.dataset.channel = c.name || c.id;
      a.onclick = (e) => { e.preventDefault(); app.channel = c.is_im ? c.id : c.name;
        app.thread = null; app.nodes.clear(); $("messages").replaceChildren(); refresh(); };
      return a;
    }));
    $("people").replaceChildren(...state.users.filter((u) => !u.is_bot).map((u) => {
      const b = document.createElement("button");
      b.className = `person${u.id === me.id ? " active" : ""}`;
      b.dataset.user = u.name;
      b.innerHTML = `<span class="avatar small" style="background:${color(u.name)}">`
        + `${BlockKit.esc(u.name[0].toUpperCase())}</span><span><b>${BlockKit.esc(u.name)}</b>`
        + `<small>${BlockKit.esc(u.roles.join(" · ") || "member")}</small></span>`;
      b.onclick = () => switchUser(u.name);
      return b;
    }));
    $("files").replaceChildren(...state.files.slice(-8).reverse().map((f) => {
      const a = document.createElement("a");
      a.className = "file-link";
      a.href = f.url;
      a.target = "_blank";
      a.textContent = `📄 ${f.title || f.name}`;
      return a;
    }));
    $("files-section").hidden = state.files.length === 0;
  }

  function switchUser(name) {
    app.user = name;
    localStorage.setItem("rollback-console-user", name);
    params.set("as", name);
    history.replaceState(null, "", `?${params}`);
    app.nodes.clear();
    refresh();
  }

  function color(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return AVATAR_COLORS[h % AVATAR_COLORS.length];
  }

  /* Replace only the rows whose content changed, so focus, scroll and selects survive. */
  function patchList(container, items, inThread) {
    const nearBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 80;
    const prefix = inThread ? "t:" : "c:";
    const keys = new Set();
    const wanted = items.map(({ m, eph }) => {
      const key = `${prefix}${eph ? "e" : "m"}:${m.ts}`;
      keys.add(key);
      const sig = JSON.stringify([m, app.user, app.selections]);
      let entry = app.nodes.get(key);
      if (!entry || entry.sig !== sig) {
        entry = { sig, node: messageNode(m, eph, inThread) };
        app.nodes.set(key, entry);
      }
      return entry.node;
    });
    for (const key of [...app.nodes.keys()]) {
      if (key.startsWith(prefix) && !keys.has(key)) app.nodes.delete(key);
    }
    const current = [...container.children];
    if (current.length !== wanted.length || current.some((n, i) => n !== wanted[i])) {
      container.replaceChildren(...wanted);
    }
    if (nearBottom) container.scrollTop = container.scrollHeight;
  }

  function messageNode(m, eph, inThread) {
    const row = document.createElement("div");
    row.className = `msg${eph ? " ephemeral" : ""}${m.pinned ? " pinned" : ""}`;
    row.dataset.ts = m.ts;
    const bot = Boolean(m.bot_id);
    const author = bot ? { name: "rollback-bot", real_name: "Rollback Bot" }
      : userOf(m.user) || { name: m.user, real_name: m.user };
    if (m.pinned) row.appendChild(el("div", "msg-pin", "📌 Pinned by Rollback Bot"));
    const avatar = el("div", "avatar", bot ? "🤖" : BlockKit.esc(author.name[0].toUpperCase()));
    avatar.style.background = bot ? "#611f69" : color(author.name);
    const main = el("div", "msg-main");
    const when = new Date(Number(m.ts) * 1000).toLocaleTimeString([], { hour: "2-digit",
      minute: "2-digit", second: "2-digit" });
    main.appendChild(el("div", "msg-head", `<span class="msg-author">${BlockKit.esc(
      author.real_name)}</span>${bot ? '<span class="app-tag">APP</span>' : ""}`
      + `<span class="msg-time">${when}</span>${m.edited ? '<span class="edited">(edited)</span>'
        : ""}`));
    const ctx = {
      fileUrl: (id) => `/api/files/${id}`,
      selection: (block, e) => app.selections[selKey(m, block, e)],
      onAction: (block, e, value, node) => act(m, eph, block, e, value, node),
    };
    if (m.blocks && m.blocks.length) main.appendChild(BlockKit.render(m.blocks, ctx));
    else if (m.text) main.appendChild(el("div", "bk-text", BlockKit.mrkdwn(m.text)));
    for (const a of m.attachments || []) main.appendChild(attachment(a, ctx));
    for (const f of m.files || []) main.appendChild(fileCard(f));
    if (!inThread && m.reply_count) {
      const link = el("a", "thread-link", `💬 ${m.reply_count} ${m.reply_count === 1 ? "reply"
        : "replies"}`);
      link.href = "#";
      link.onclick = (e) => { e.preventDefault(); app.thread = m.ts; render(app.state); };
      main.appendChild(link);
    }
    if (eph) {
      const foot = el("div", "eph-foot", "👁 Only visible to you · ");
      const dismiss = el("a", "dismiss", "Dismiss");
      dismiss.href = "#";
      dismiss.onclick = (e) => { e.preventDefault(); app.dismissed.add(m.ts); render(app.state); };
      foot.appendChild(dismiss);
      main.appendChild(foot);
    }
    row.append(avatar, main);
    return row;
  }

  function el(tag, cls, html) {
    const n = document.createElement(tag);
    n.className = cls;
    if (html != null) n.innerHTML = html;
    return n;
  }

  function attachment(a, ctx) {
    const box = el("div", "attachment");
    box.style.borderColor = /^#?[0-9a-f]{3,6}$/i.test(a.color || "")
      ? (a.color.startsWith("#") ? a.color : `#${a.color}`)
      : ({ good: "#2eb67d", warning: "#ecb22e", danger: "#e01e5a" }[a.color] || "#ddd");
    if (a.pretext) box.appendChild(el("div", "bk-text", BlockKit.mrkdwn(a.pretext)));
    if (a.title) box.appendChild(el("div", "att-title", BlockKit.esc(a.title)));
    if (a.text) box.appendChild(el("div", "bk-text", BlockKit.mrkdwn(a.text)));
    if (a.fields) {
      box.appendChild(el("div", "bk-fields", a.fields.map((f) => `<div class="bk-field"><b>${
        BlockKit.esc(f.title)}</b><br>${BlockKit.mrkdwn(f.value)}</div>`).join("")));
    }
    if (a.blocks) box.appendChild(BlockKit.render(a.blocks, ctx));
    return box;
  }

  function fileCard(f) {
    const url = `/api/files/${encodeURIComponent(f.id)}`;
    if (/^image\//.test(f.mimetype || "")) {
      const a = el("a", "file-image");
      a.href = url;
      a.target = "_blank";
      const img = document.createElement("img");
      img.src = url;
      img.alt = f.title || f.name;
      a.appendChild(img);
      return a;
    }
    const card = el("div", "file-card");
    card.innerHTML = `<span class="file-icon">📄</span><span class="file-meta"><a href="${url}"`
      + ` target="_blank" class="file-name">${BlockKit.esc(f.title || f.name)}</a><small>`
      + `${BlockKit.esc((f.filetype || "file").toUpperCase())} · ${size(f.size)}</small></span>`;
    const details = el("details", "file-preview", "<summary>Preview</summary><pre></pre>");
    details.ontoggle = async () => {
      const pre = details.querySelector("pre");
      if (!details.open || pre.dataset.loaded) return;
      const text = await (await fetch(url)).text();
      pre.textContent = text.length > 20000 ? `${text.slice(0, 20000)}\n…` : text;
      pre.dataset.loaded = "1";
    };
    card.appendChild(details);
    return card;
  }

  function size(n) {
    if (!n) return "0 B";
    return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB`
      : `${(n / 1048576).toFixed(1)} MB`;
  }

  function selKey(m, block, e) {
    return `${m.ts}|${block.block_id}|${e.action_id}`;
  }

  /* A click or a choice: confirm first if the element asks, then send block_actions. */
  async function act(m, eph, block, e, value, node) {
    if (e.confirm && !(await Dialogs.confirm(e.confirm))) return;
    if (e.type !== "button") app.selections[selKey(m, block, e)] = value;
    node.classList.add("busy");
    if ("disabled" in node) node.disabled = true;
    try {
      const answer = await api("/api/action", { ts: m.ts, block_id: block.block_id,
        action_id: e.action_id, value, ephemeral: eph });
      if (!answer.ok) Dialogs.toast(answer.error || "the app did not accept this");
    } finally {
      node.classList.remove("busy");
      if ("disabled" in node) node.disabled = false;
    }
  }

  function renderThread(state) {
    const pane = $("thread");
    const parent = app.thread && state.messages.find((m) => m.ts === app.thread);
    pane.hidden = !parent;
    if (!parent) { app.thread = null; return; }
    const channel = state.channels.find((c) => c.id === state.channel);
    $("thread-channel").textContent = channel.is_im ? "Rollback Bot" : `#${channel.name}`;
    const replies = (parent.replies || []).map((m) => ({ m, eph: false }));
    const ephs = state.ephemerals.filter((e) => e.thread_ts === parent.ts
      && !app.dismissed.has(e.ts)).map((m) => ({ m, eph: true }));
    const items = [{ m: parent, eph: false }, ...replies, ...ephs]
      .sort((a, b) => Number(a.m.ts) - Number(b.m.ts));
    patchList($("thread-messages"), items, true);
  }

  // ------------------------------------------------------------------------ composer
  function showSuggestions() {
    const value = $("composer-input").value;
    const box = $("suggestions");
    const matches = value.startsWith("/") ? SUGGESTIONS.filter(([cmd]) => cmd.startsWith(
      value.split(" ")[0]) && cmd !== value) : [];
    box.hidden = matches.length === 0;
    box.replaceChildren(...matches.map(([cmd, what]) => {
      const b = el("button", "suggestion", `<code>${BlockKit.esc(cmd)}</code> <small>${
        BlockKit.esc(what)}</small>`);
      b.type = "button";
      b.onclick = () => { $("composer-input").value = cmd; box.hidden = true;
        $("composer-input").focus(); };
      return b;
    }));
  }

  async function send(event) {
    event.preventDefault();
    const input = $("composer-input");
    const line = input.value.trim();
    if (!line) return;
    input.value = "";
    $("suggestions").hidden = true;
    const status = $("composer-status");
    status.textContent = `Sending ${line.split(" ")[0]} as @${app.user}…`;
    const answer = await api("/api/say", { line, wait: false });
    status.textContent = "";
    if (!answer.ok) {
      Dialogs.toast(answer.error || "could not send");
      input.value = line;
    }
  }

  $("composer").addEventListener("submit", send);
  $("composer-input").addEventListener("input", showSuggestions);
  $("composer-input").addEventListener("keydown", (e) => {
    if (e.key === "Escape") $("suggestions").hidden = true;
  });
  $("thread-close").onclick = () => { app.thread = null; render(app.state); };
  for (const b of document.querySelectorAll("[data-try]")) {
    b.onclick = () => { $("composer-input").value = b.dataset.try; $("composer-input").focus(); };
  }
  connect();
  refresh();
})();

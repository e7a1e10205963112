/* Block Kit and mrkdwn rendering for the sandbox console (vanilla JS, no dependencies).
 *
 * BlockKit.render(blocks, ctx) turns a message's or a modal's blocks into DOM nodes.
 * Interactive elements call ctx.onAction(block, element, value, node); inputs in modals
 * keep their values in the DOM until BlockKit.collect(container) reads them back as
 * {"block_id/action_id": value}, the shape SlackDriver.submit_view takes.
 */
"use strict";

const BlockKit = (() => {
  const dir = { users: {}, channels: {} };
  const EMOJI = {
    alarm_clock: "⏰", arrow_forward: "▶️", arrows_counterclockwise: "🔄",
    ballot_box_with_check: "☑️", eyes: "👀", fast_forward: "⏩", gear: "⚙️",
    heavy_check_mark: "✔️", heavy_multiplication_x: "✖️", hourglass: "⌛",
    hourglass_flowing_sand: "⏳", large_green_circle: "🟢", large_yellow_circle: "🟡",
    mag: "🔍", no_entry: "⛔", no_entry_sign: "🚫", recycle: "♻️", red_circle: "🔴",
    rotating_light: "🚨", warning: "⚠️", white_check_mark: "✅", white_circle: "⚪",
    white_large_square: "⬜", x: "❌", memo: "📝", page_facing_up: "📄", pushpin: "📌",
    bell: "🔔", tada: "🎉", fire: "🔥", rocket: "🚀", bulb: "💡", clock1: "🕐",
    calendar: "📅", lock: "🔒", bar_chart: "📊", chart_with_upwards_trend: "📈",
    information_source: "ℹ️", question: "❓", thumbsup: "👍", "+1": "👍", wave: "👋",
    sos: "🆘", construction: "🚧", link: "🔗", speech_balloon: "💬",
  };

  function setDirectory(users, channels) {
    dir.users = {};
    dir.channels = {};
    for (const u of users || []) dir.users[u.id] = u;
    for (const c of channels || []) dir.channels[c.id] = c;
  }

  function userName(id) {
    const u = dir.users[id];
    return u ? u.name : id;
  }

  function esc(s) {
    return String(s == null ? "" : s).replace(/&/g, "&amp;").replace(/</g, "&lt;")
      .replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function unescapeSlack(s) {
    return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  function emoji(html) {
    return html.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
  }

  function safeUrl(url) {
    return /^(https?:|mailto:|\/api\/files\/)/i.test(url) ? url : null;
  }

  /* One <...> token: a mention, a channel, a special mention or a link. */
  function token(inner) {
    const [ref, label] = inner.split("|", 2);
    if (ref.startsWith("@")) {
      return `<span class="mention">@${esc(label || userName(ref.slice(1)))}</span>`;
    }
    if (ref.startsWith("#")) {
      const c = dir.channels[ref.slice(1)];
      return `<span class="mention">#${esc(label || (c ? c.name : ref.slice(1)))}</span>`;
    }
    if (ref.startsWith("!")) {
      const what = label || ref.slice(1).split("^")[0];
      return `<span class="mention">${esc(what.startsWith("@") ? what : "@" + what)}</span>`;
    }
    const url = safeUrl(unescapeSlack(ref));
    const text = esc(unescapeSlack(label || ref));
    return url ? `<a href="${esc(url)}" target="_blank" rel="noopener">${text}</a>` : text;
  }

  /* Slack mrkdwn to HTML: escapes first, formatting only outside code and links. */
  function mrkdwn(text) {
    const held = [];
    const hold = (html) => `\u0000${held.push(html) - 1}\u0000`;
    let s = String(text == null ? "" : text);
    s = s.replace(/```([\s\S]*?)```/g, (m, code) => hold(`<pre>${esc(unescapeSlack(code))}</pre>`));
    s = s.replace(/`([^`\n]+)`/g, (m, code) => hold(`<code>${esc(unescapeSlack(code))}</code>`));
    s = s.replace(/<([^<>\n]+)>/g, (m, inner) => hold(token(inner)));
    s = emoji(esc(unescapeSlack(s)));
    const edge = "(^|[\\s(\\[>\\u0000])";
    const end = "(?=$|[\\s).,!?:;\\]\\u0000<—-])";
    s = s.replace(new RegExp(edge + "\\*([^*\\n]+?)\\*" + end, "gm"), "$1<b>$2</b>");
    s = s.replace(new RegExp(edge + "_([^_\\n]+?)_" + end, "gm"), "$1<i>$2</i>");
    s = s.replace(new RegExp(edge + "~([^~\\n]+?)~" + end, "gm"), "$1<s>$2</s>");
    s = s.split("\n").map((line) => (line.startsWith("&gt; ")
      ? `<span class="quote">${line.slice(5)}</span>` : line)).join("<br>");
    return s.replace(/\u0000(\d+)\u0000/g, (m, i) => held[Number(i)]);
  }

  function textHtml(obj) {
    if (obj == null) return "";
    if (typeof obj === "string") return esc(obj);
    return obj.type === "mrkdwn" ? mrkdwn(obj.text) : emoji(esc(obj.text));
  }

  function node(tag, cls, html) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (html != null) n.innerHTML = html;
    return n;
  }

  function optionsOf(el) {
    const out = [...(el.options || [])];
    for (const g of el.option_groups || []) out.push(...(g.options || []));
    return out;
  }

  function imageSrc(el, ctx) {
    if (el.slack_file && el.slack_file.id) return ctx.fileUrl(el.slack_file.id);
    return el.image_url || (el.slack_file && el.slack_file.url) || "";
  }

  function image(el, ctx, cls) {
    const img = node("img", cls);
    img.alt = el.alt_text || "";
    img.title = el.alt_text || "";
    img.src = imageSrc(el, ctx);
    img.onerror = () => { img.replaceWith(node("span", "bk-img-missing", `🖼 ${esc(img.alt)}`)); };
    return img;
  }

  /* A select (static, users, conversations) as a <select>; value strings are Slack's. */
  function selectControl(el, current, placeholder) {
    const sel = node("select", "bk-select");
    const multi = el.type.startsWith("multi_");
    sel.multiple = multi;
    if (!multi) {
      const ph = node("option", null, textHtml(el.placeholder || placeholder) || "Select…");
      ph.value = "";
      sel.appendChild(ph);
    }
    let opts;
    if (/users_select$/.test(el.type)) {
      opts = Object.values(dir.users).filter((u) => !u.is_bot)
        .map((u) => ({ value: u.id, html: esc(`${u.real_name} (@${u.name})`) }));
    } else if (/(conversations|channels)_select$/.test(el.type)) {
      opts = Object.values(dir.channels).filter((c) => !c.is_im)
        .map((c) => ({ value: c.id, html: esc("#" + c.name) }));
    } else {
      opts = null;
      const groups = el.option_groups || [{ options: el.options || [] }];
      for (const g of groups) {
        const parent = g.label ? node("optgroup") : sel;
        if (g.label) { parent.label = g.label.text; sel.appendChild(parent); }
        for (const o of g.options || []) {
          const opt = node("option", null, textHtml(o.text));
          opt.value = o.value;
          parent.appendChild(opt);
        }
      }
    }
    for (const o of opts || []) {
      const opt = node("option", null, o.html);
      opt.value = o.value;
      sel.appendChild(opt);
    }
    const chosen = [].concat(current == null ? [] : current);
    for (const opt of sel.options) opt.selected = chosen.includes(opt.value);
    return sel;
  }

  function initialOf(el) {
    if (el.initial_option) return el.initial_option.value;
    if (el.initial_options) return el.initial_options.map((o) => o.value);
    for (const k of ["initial_user", "initial_conversation", "initial_channel", "initial_users",
      "initial_conversations", "initial_channels", "initial_date", "initial_time",
      "initial_value"]) {
      if (el[k] != null) return el[k];
    }
    return null;
  }

  function choiceList(el, current, name) {
    const box = node("div", "bk-choices");
    const chosen = [].concat(current == null ? [] : current);
    for (const o of optionsOf(el)) {
      const label = node("label", "bk-choice");
      const input = node("input");
      input.type = el.type.startsWith("checkboxes") ? "checkbox" : "radio";
      input.name = name;
      input.value = o.value;
      input.checked = chosen.includes(o.value);
      label.appendChild(input);
      label.appendChild(node("span", null, textHtml(o.text)));
      if (o.description) label.appendChild(node("small", null, textHtml(o.description)));
      box.appendChild(label);
    }
    return box;
  }

  function readChoices(box) {
    return [...box.querySelectorAll("input:checked")].map((i) => i.value);
  }

  /* One interactive element of a message (or a modal's actions block). */
  function element(block, el, ctx) {
    const fire = (value, n) => ctx.onAction(block, el, value, n);
    const current = ctx.selection ? ctx.selection(block, el) : undefined;
    const value = current !== undefined ? current : initialOf(el);
    switch (el.type) {
      case "button": {
        const b = node("button", `bk-button ${el.style || ""}`.trim(), textHtml(el.text));
        b.type = "button";
        b.dataset.actionId = el.action_id || "";
        if (el.url) b.title = el.url;
        b.onclick = () => {
          if (el.url && safeUrl(el.url)) window.open(el.url, "_blank", "noopener");
          fire(el.value == null ? null : el.value, b);
        };
        return b;
      }
      case "overflow": {
        const sel = selectControl({ ...el, type: "static_select" }, null, { text: "⋯" });
        sel.classList.add("bk-overflow");
        sel.onchange = () => { const v = sel.value; sel.value = ""; if (v) fire(v, sel); };
        return sel;
      }
      case "checkboxes": case "radio_buttons": {
        const box = choiceList(el, value, `${block.block_id}/${el.action_id}`);
        box.onchange = () => {
          const v = readChoices(box);
          fire(el.type === "checkboxes" ? v : v[0], box);
        };
        return box;
      }
      case "datepicker": case "timepicker": {
        const input = node("input", "bk-select");
        input.type = el.type === "datepicker" ? "date" : "time";
        input.value = value || "";
        input.onchange = () => fire(input.value, input);
        return input;
      }
      case "image": return image(el, ctx, "bk-accessory-img");
      default:
        if (/select$/.test(el.type)) {
          const sel = selectControl(el, value);
          sel.dataset.actionId = el.action_id || "";
          sel.onchange = () => {
            const v = sel.multiple ? [...sel.selectedOptions].map((o) => o.value) : sel.value;
            if (v !== "") fire(v, sel);
          };
          return sel;
        }
        return node("span", "bk-unsupported", esc(`[${el.type}]`));
    }
  }

  /* An input block of a modal: label, control, hint and a slot for the app's error. */
  function input(block, ctx) {
    const el = block.element || {};
    const wrap = node("div", "bk-input");
    const key = `${block.block_id}/${el.action_id}`;
    Object.assign(wrap.dataset, { blockId: block.block_id, key, type: el.type,
      optional: block.optional ? "1" : "" });
    const label = node("label", "bk-label", textHtml(block.label)
      + (block.optional ? ' <span class="optional">(optional)</span>' : ""));
    const id = `in-${key.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
    label.htmlFor = id;
    wrap.appendChild(label);
    let control;
    const value = initialOf(el);
    if (/text_input$|number_input$/.test(el.type)) {
      control = node(el.multiline ? "textarea" : "input", "bk-text-input");
      if (!el.multiline) control.type = el.type === "number_input" ? "number" : "text";
      control.value = value || "";
      if (el.placeholder) control.placeholder = el.placeholder.text;
    } else if (el.type === "checkboxes" || el.type === "radio_buttons") {
      control = choiceList(el, value, key);
    } else if (el.type === "datepicker" || el.type === "timepicker") {
      control = node("input", "bk-select");
      control.type = el.type === "datepicker" ? "date" : "time";
      control.value = value || "";
    } else if (/select$/.test(el.type)) {
      control = selectControl(el, value);
    } else {
      control = node("div", "bk-unsupported", esc(`[${el.type} is not supported here]`));
    }
    control.id = id;
    control.dataset.control = "1";
    control.setAttribute("name", el.action_id || "");
    if (!(control instanceof HTMLDivElement)) control.setAttribute("aria-label", block.label.text);
    wrap.appendChild(control);
    if (block.hint) wrap.appendChild(node("div", "bk-hint", textHtml(block.hint)));
    wrap.appendChild(node("div", "bk-error"));
    return wrap;
  }

  /* {"block_id/action_id": value} from a rendered modal, plus required inputs left empty. */
  function collect(container) {
    const values = {};
    const missing = [];
    for (const wrap of container.querySelectorAll(".bk-input")) {
      const control = wrap.querySelector("[data-control]");
      let v;
      if (wrap.dataset.type === "checkboxes") v = readChoices(control);
      else if (wrap.dataset.type === "radio_buttons") v = readChoices(control)[0] || null;
      else if (control.multiple) v = [...control.selectedOptions].map((o) => o.value);
      else v = control.value == null ? null : control.value;
      const empty = v == null || v === "" || (Array.isArray(v) && v.length === 0);
      if (empty && !wrap.dataset.optional) missing.push(wrap.dataset.blockId);
      values[wrap.dataset.key] = empty ? null : v;
    }
    return { values, missing };
  }

  function richText(block) {
    const inline = (e) => {
      if (e.type === "text") {
        let h = esc(e.text);
        const st = e.style || {};
        if (st.code) h = `<code>${h}</code>`;
        if (st.bold) h = `<b>${h}</b>`;
        if (st.italic) h = `<i>${h}</i>`;
        if (st.strike) h = `<s>${h}</s>`;
        return h.replace(/\n/g, "<br>");
      }
      if (e.type === "link") return token(`${e.url}|${e.text || e.url}`);
      if (e.type === "user") return token(`@${e.user_id}`);
      if (e.type === "channel") return token(`#${e.channel_id}`);
      if (e.type === "emoji") return EMOJI[e.name] || `:${esc(e.name)}:`;
      return esc(e.text || "");
    };
    const part = (p) => {
      const inner = (p.elements || []).map((e) => (e.elements ? part(e) : inline(e))).join("");
      if (p.type === "rich_text_preformatted") return `<pre>${inner}</pre>`;
      if (p.type === "rich_text_quote") return `<span class="quote">${inner}</span>`;
      if (p.type === "rich_text_list") {
        const tag = p.style === "ordered" ? "ol" : "ul";
        return `<${tag}>${(p.elements || []).map((e) => `<li>${part(e)}</li>`).join("")}</${tag}>`;
      }
      return inner;
    };
    return node("div", "bk-section", (block.elements || []).map(part).join("<br>"));
  }

  /* Blocks of a message or a modal as one container node. */
  function render(blocks, ctx) {
    const box = node("div", "bk-blocks");
    for (const block of blocks || []) {
      let n;
      switch (block.type) {
        case "header": n = node("div", "bk-header", textHtml(block.text)); break;
        case "divider": n = node("hr", "bk-divider"); break;
        case "section": {
          n = node("div", "bk-section");
          const body = node("div", "bk-section-body");
          if (block.text) body.appendChild(node("div", "bk-text", textHtml(block.text)));
          if (block.fields) {
            const grid = node("div", "bk-fields");
            for (const f of block.fields) grid.appendChild(node("div", "bk-field", textHtml(f)));
            body.appendChild(grid);
          }
          n.appendChild(body);
          if (block.accessory) {
            const acc = node("div", "bk-accessory");
            acc.appendChild(element(block, block.accessory, ctx));
            n.appendChild(acc);
          }
          break;
        }
        case "context":
          n = node("div", "bk-context");
          for (const e of block.elements || []) {
            n.appendChild(e.type === "image" ? image(e, ctx, "bk-context-img")
              : node("span", null, textHtml(e)));
          }
          break;
        case "actions":
          n = node("div", "bk-actions");
          for (const e of block.elements || []) n.appendChild(element(block, e, ctx));
          break;
        case "image":
          n = node("figure", "bk-image");
          if (block.title) n.appendChild(node("figcaption", null, textHtml(block.title)));
          n.appendChild(image(block, ctx, "bk-image-img"));
          break;
        case "input": n = input(block, ctx); break;
        case "rich_text": n = richText(block); break;
        case "file":
          n = node("div", "bk-context", `📎 file ${esc(block.external_id || block.file_id || "")}`);
          break;
        default: n = node("div", "bk-unsupported", esc(`[unsupported block: ${block.type}]`));
      }
      if (block.block_id) n.dataset.blockId = block.block_id;
      n.dataset.blockType = block.type;
      box.appendChild(n);
    }
    return box;
  }

  return { setDirectory, esc, mrkdwn, textHtml, render, collect, userName, emoji };
})();

/* Dialogs of the sandbox console: Block Kit confirm objects, the acting user's modal, toasts.
 *
 * The modal mirrors the emulator's view stack: it is re-rendered only when the view itself
 * changes (so typing is never lost to a refresh); the app's errors are painted under inputs.
 */
"use strict";

const Dialogs = (() => {
  const $ = (id) => document.getElementById(id);
  let modalSig = null;
  let modalViewId = null;
  let localErrors = {};  // "required" errors the client found; kept until the next submit

  function toast(message, kind) {
    const t = document.createElement("div");
    t.className = `toast ${kind || "error"}`;
    t.textContent = message;
    $("toasts").appendChild(t);
    setTimeout(() => t.remove(), kind === "info" ? 3000 : 7000);
  }

  /* Slack's confirmation dialog for a button with a `confirm` object; resolves true/false. */
  function confirm(obj) {
    return new Promise((resolve) => {
      const box = $("confirm");
      $("confirm-title").innerHTML = BlockKit.textHtml(obj.title || { type: "plain_text",
        text: "Are you sure?" });
      $("confirm-text").innerHTML = BlockKit.textHtml(obj.text);
      const yes = $("confirm-yes");
      const no = $("confirm-no");
      yes.innerHTML = BlockKit.textHtml(obj.confirm || { type: "plain_text", text: "Yes" });
      no.innerHTML = BlockKit.textHtml(obj.deny || { type: "plain_text", text: "Cancel" });
      yes.className = `bk-button ${obj.style === "danger" ? "danger" : "primary"}`;
      box.hidden = false;
      const done = (answer) => {
        box.hidden = true;
        yes.onclick = no.onclick = box.onclick = document.onkeydown = null;
        resolve(answer);
      };
      yes.onclick = () => done(true);
      no.onclick = () => done(false);
      box.onclick = (e) => { if (e.target === box) done(false); };
      document.onkeydown = (e) => { if (e.key === "Escape") done(false); };
      yes.focus();
    });
  }

  function viewSig(view) {
    const { state, hash, ...shape } = view;  // state changes on submit; the shape does not
    return JSON.stringify(shape);
  }

  /* Show (or hide) `state.view`, the acting user's top modal. `api` posts to the console. */
  function showModal(state, api) {
    const overlay = $("modal");
    const view = state.view;
    if (!view) {
      overlay.hidden = true;
      modalSig = modalViewId = null;
      return;
    }
    const sig = viewSig(view);
    if (sig !== modalSig || view.id !== modalViewId) {
      localErrors = {};
      modalSig = sig;
      modalViewId = view.id;
      $("modal-title").innerHTML = BlockKit.textHtml(view.title);
      $("modal-depth").textContent = state.view_depth > 1 ? `${state.view_depth} views` : "";
      const body = $("modal-body");
      body.replaceChildren(BlockKit.render(view.blocks, {
        fileUrl: (id) => `/api/files/${id}`,
        onAction: () => toast("Buttons inside modals are not wired in the sandbox yet."),
      }));
      const submit = $("modal-submit");
      submit.hidden = !view.submit;
      submit.innerHTML = BlockKit.textHtml(view.submit || { type: "plain_text", text: "Submit" });
      $("modal-close").innerHTML = BlockKit.textHtml(view.close
        || { type: "plain_text", text: view.submit ? "Cancel" : "Close" });
      submit.onclick = () => submitModal(view, api);
      $("modal-close").onclick = $("modal-x").onclick = () => closeModal(api);
      overlay.hidden = false;
      const first = body.querySelector("[data-control]");
      if (first && first.focus) first.focus();
    }
    paintErrors({ ...(state.view_errors || {}), ...localErrors });
  }

  function paintErrors(errors) {
    for (const wrap of $("modal-body").querySelectorAll(".bk-input")) {
      const msg = errors[wrap.dataset.blockId] || "";
      wrap.querySelector(".bk-error").textContent = msg;
      wrap.classList.toggle("has-error", Boolean(msg));
    }
  }

  async function submitModal(view, api) {
    const { values, missing } = BlockKit.collect($("modal-body"));
    localErrors = {};
    for (const id of missing) localErrors[id] = "Please complete this required field.";
    if (missing.length) {  // Slack's client checks required inputs before sending anything
      paintErrors(localErrors);
      return;
    }
    const submit = $("modal-submit");
    submit.disabled = true;
    try {
      const answer = await api("/api/view/submit", { view_id: view.id, values });
      if (!answer.ok) toast(`The app could not take this: ${answer.error || answer.result}`);
      else if (answer.result === "errors") paintErrors(answer.errors || {});
    } finally {
      submit.disabled = false;
    }
  }

  async function closeModal(api) {
    const answer = await api("/api/view/close", {});
    if (!answer.ok) toast(answer.error || "could not close the modal");
    $("modal").hidden = true;
    modalSig = modalViewId = null;
  }

  return { toast, confirm, showModal };
})();

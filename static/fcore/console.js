/* Federation Core console: countdowns and keyboard shortcuts.
 *
 * A static file (the content security policy allows no inline script). Everything here is
 * an enhancement: the server renders the expiry as text, and every action is a button.
 *
 * Countdowns: every <time data-countdown datetime="…"> shows the time left, each second.
 * Queue shortcuts (never while typing in a field, never with Ctrl/Alt/Meta):
 *   j / k  next / previous gate      a  approve the focused gate
 *   r      reject: focuses the comment; Ctrl+Enter (or Cmd+Enter) there sends the reject
 *   x      tick the focused gate for a bulk decision
 *   ?      show or hide the shortcut help          Esc  leave a field
 */
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function left(ms) {
    if (ms <= 0) { return "expired"; }
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) { return "in " + d + "d " + pad(h) + "h " + pad(m) + "m"; }
    if (h > 0) { return "in " + h + "h " + pad(m) + "m " + pad(sec) + "s"; }
    return "in " + m + "m " + pad(sec) + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      var text = left(at - now);
      if (el.textContent !== text) { el.textContent = text; }
      el.classList.toggle("is-soon", at - now < 3600 * 1000);
      el.classList.toggle("is-expired", at - now <= 0);
    });
  }

  /* --- keyboard ------------------------------------------------------------------------ */

  var focusedGate = null;
  var focusedIndex = 0;

  function typing(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function cards() {
    return Array.prototype.slice.call(document.querySelectorAll("#gate-queue .gate-card[data-gate]"));
  }

  function current() {
    var list = cards();
    if (focusedGate) {
      for (var i = 0; i < list.length; i++) {
        if (list[i].getAttribute("data-gate") === focusedGate) { return list[i]; }
      }
    }
    return null;
  }

  function focusCard(card, scroll) {
    cards().forEach(function (c) { c.classList.remove("is-focused"); });
    if (!card) { focusedGate = null; return; }
    card.classList.add("is-focused");
    focusedGate = card.getAttribute("data-gate");
    focusedIndex = cards().indexOf(card);
    card.focus({preventScroll: !scroll});
    if (scroll) { card.scrollIntoView({block: "nearest"}); }
  }

  function move(step) {
    var list = cards();
    if (!list.length) { return; }
    var index = list.indexOf(current());
    index = index < 0 ? (step > 0 ? 0 : list.length - 1)
                      : Math.min(Math.max(index + step, 0), list.length - 1);
    focusCard(list[index], true);
  }

  function button(card, value) {
    var b = card && card.querySelector('.decide-form button[name="decision"][value="' + value + '"]');
    return b && !b.disabled ? b : null;
  }

  function toggleHelp() {
    var help = document.getElementById("shortcut-help");
    if (!help) { return; }
    help.open = !help.open;
    if (help.open) { help.querySelector("summary").focus(); }
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") { target.blur(); return; }
      var form = target.closest && target.closest(".decide-form");
      if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)
          && form.getAttribute("data-intent") === "reject") {
        event.preventDefault();
        var reject = form.querySelector('button[value="reject"]');
        if (reject && !reject.disabled) { reject.click(); }
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.key === "?") { event.preventDefault(); toggleHelp(); return; }
    if (!document.getElementById("gate-queue")) { return; }
    var card = current();
    switch (event.key) {
      case "j": event.preventDefault(); move(1); break;
      case "k": event.preventDefault(); move(-1); break;
      case "a": {
        var approve = button(card, "approve");
        if (approve) { event.preventDefault(); approve.click(); }
        break;
      }
      case "r": {
        var comment = card && card.querySelector(".decide-form textarea[name=comment]");
        if (comment && !comment.disabled) {
          event.preventDefault();
          comment.closest(".decide-form").setAttribute("data-intent", "reject");
          comment.setAttribute("placeholder", "Why reject? Then Ctrl+Enter.");
          comment.focus();
        }
        break;
      }
      case "x": {
        var pick = card && card.querySelector('input[name="gates"]');
        if (pick) { event.preventDefault(); pick.checked = !pick.checked; }
        break;
      }
      default: break;
    }
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#gate-queue .gate-card[data-gate]");
    if (card && card.getAttribute("data-gate") !== focusedGate) {
      cards().forEach(function (c) { c.classList.remove("is-focused"); });
      card.classList.add("is-focused");
      focusedGate = card.getAttribute("data-gate");
      focusedIndex = cards().indexOf(card);
    }
  });

  /* After a poll or a vote the list is new: keep the focus where the person was. */
  document.addEventListener("htmx:afterSwap", function () {
    tick();
    if (!focusedGate) { return; }
    var card = current();
    if (!card) {
      var list = cards();
      card = list[Math.min(focusedIndex, list.length - 1)] || null;
    }
    var active = document.activeElement;
    var keepField = typing(active);
    if (card) {
      card.classList.add("is-focused");
      focusedGate = card.getAttribute("data-gate");
      if (!keepField) { card.focus({preventScroll: true}); }
    } else {
      focusedGate = null;
    }
  });

  /* A bulk decision went through: clear its comment. */
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (form && form.id === "bulk-form" && event.detail.successful) {
      var comment = form.querySelector("textarea[name=comment]");
      if (comment) { comment.value = ""; }
    }
  });

  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
}());

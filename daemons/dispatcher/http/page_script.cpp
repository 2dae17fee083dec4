// /static/kiln.js (see page_script.hpp for what it does and why).
#include "page_script.hpp"

namespace kiln {

const std::string_view kPageScript = R"JS(// Kiln: keeps a server-rendered page current.
// The page works without it.
(function () {
  'use strict';
  var page = document.body.getAttribute('data-page');
  if (page !== 'home' && page !== 'commit' && page !== 'runner') return;
  var note = document.getElementById('live');
  var FAILED = { failed: 1, error: 1, timeout: 1 };
  var DONE = { passed: 1, failed: 1, error: 1, timeout: 1, skipped: 1, cancelled: 1 };
  function say(text) { if (note) note.textContent = text; }

  // ---- sections: fetch this page again and swap in its data-live parts ----
  var fetching = false, pending = false, timer = null, lastFetch = 0;
  function refreshSoon() {
    if (timer) return;
    var wait = Math.max(0, 300 - (Date.now() - lastFetch)); // at most ~3 a second
    timer = setTimeout(function () { timer = null; refresh(); }, wait);
  }
  function refresh() {
    if (fetching) { pending = true; return; }
    fetching = true;
    lastFetch = Date.now();
    fetch(location.href, { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, 'text/html');
        var mine = document.querySelectorAll('[data-live]');
        for (var i = 0; i < mine.length; i++) {
          var fresh = mine[i].id && doc.getElementById(mine[i].id);
          if (fresh) mine[i].replaceWith(document.importNode(fresh, true));
        }
        adoptNewSections(doc);
        logAfterRefresh(doc);
      })
      .catch(function () { /* keep what is shown; the next event tries again */ })
      .then(function () {
        fetching = false;
        if (pending) { pending = false; refreshSoon(); }
      });
  }
  // A section the page did not have when loaded (shards once a commit splits).
  function adoptNewSections(doc) {
    var fresh = doc.querySelectorAll('main > [data-live]');
    for (var i = 0; i < fresh.length; i++) {
      if (!fresh[i].id || document.getElementById(fresh[i].id)) continue;
      var before = fresh[i].nextElementSibling;
      var anchor = before && before.id && document.getElementById(before.id);
      var copy = document.importNode(fresh[i], true);
      if (anchor) anchor.parentNode.insertBefore(copy, anchor);
      else document.querySelector('main').appendChild(copy);
    }
  }

  // ---- a job's event (queued, started, requeued, shard, finished; data:
  // job, state, outcome, ...): recolour that job's rows now, then refresh ----
  function stateOf(d) {
    if (d.outcome && DONE[d.outcome]) return d.outcome;
    if (d.state === 'queued') return 'queued';
    if (d.state === 'done') return 'error';
    return 'running';
  }
  function onJobEvent(ev) {
    var d;
    try { d = JSON.parse(ev.data); } catch (e) { return; }
    if (!d || typeof d !== 'object') return;
    var state = stateOf(d), rows = [];
    if (d.job != null) rows = document.querySelectorAll('tr[data-job="' + Number(d.job) + '"]');
    for (var i = 0; i < rows.length; i++) {
      var badge = rows[i].querySelector('.state');
      if (!badge) continue;
      badge.className = 'state ' + state;
      badge.textContent = state;
    }
    refreshSoon();
  }

  // ---- the job events stream ----
  var JOB_EVENTS = ['queued', 'started', 'requeued', 'shard', 'finished'];
  function listen() {
    if (!window.EventSource) return;
    var events = new EventSource('/api/v1/events');
    for (var i = 0; i < JOB_EVENTS.length; i++) events.addEventListener(JOB_EVENTS[i], onJobEvent);
    events.onopen = function () { say(' \u25cf live'); refreshSoon(); };
    events.onerror = function () {
      say(events.readyState === EventSource.CLOSED ? ' (not live)' : ' (reconnecting)');
    };
  }

  // ---- a running commit's log ----
  var log = document.getElementById('log'), logStream = null, logChunks = 0;
  var MAX_LOG_CHARS = 512 * 1024; // the oldest text goes past this
  var encoder = new TextEncoder(), decoder = new TextDecoder();
  function utf8(text) { return encoder.encode(text); }
  function follow() {
    if (!log || !log.getAttribute('data-follow') || !window.EventSource) return;
    var shown = Number(log.getAttribute('data-offset') || 0);
    var attempt = Number(log.getAttribute('data-attempt') || 0);
    logStream = new EventSource(log.getAttribute('data-follow'));
    // data: {"offset": N, "text": "...", "attempt": A} (plain text works too).
    logStream.addEventListener('log', function (ev) {
      var text = ev.data, offset = null, d = null;
      try { d = JSON.parse(ev.data); } catch (e) { d = null; }
      if (d && typeof d === 'object') {
        text = typeof d.text === 'string' ? d.text : '';
        offset = typeof d.offset === 'number' ? d.offset : null;
        if (typeof d.attempt === 'number' && d.attempt !== attempt) {
          // The job runs again (its runner was lost): its log starts over.
          if (attempt) { log.textContent = ''; shown = 0; logChunks = 0; }
          attempt = d.attempt;
        }
      }
      if (offset !== null) { // offsets count bytes: skip those the page already shows
        var bytes = utf8(text);
        if (offset + bytes.length <= shown) return;
        if (offset < shown) text = decoder.decode(bytes.subarray(shown - offset));
        shown = Math.max(shown, offset + bytes.length);
      }
      append(text);
    });
    logStream.addEventListener('end', function () { stopFollowing(); refreshSoon(); });
    logStream.onerror = function () {
      if (logStream && logStream.readyState === EventSource.CLOSED) stopFollowing();
    };
  }
  function append(text) {
    if (!text) return;
    logChunks++;
    var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    log.appendChild(document.createTextNode(text));
    if (log.textContent.length > MAX_LOG_CHARS) {
      log.textContent = log.textContent.slice(-MAX_LOG_CHARS / 2);
      var lead = document.getElementById('log-note');
      if (lead) lead.textContent = 'Earlier output is not shown.';
    }
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  }
  function stopFollowing() {
    if (logStream) logStream.close();
    logStream = null;
  }
  // The job is done when the fresh page no longer follows a stream.  A
  // stream that has been delivering closes itself on 'end', after the last
  // bytes (the job's event may come first); without one, take the page's log.
  function logAfterRefresh(doc) {
    var fresh = doc.getElementById('log');
    if (!log || !fresh || fresh.getAttribute('data-follow')) return;
    if (logStream && logChunks > 0) return;
    stopFollowing();
    if (logChunks === 0) {
      var section = doc.getElementById('log-section');
      var mine = document.getElementById('log-section');
      if (section && mine) mine.replaceWith(document.importNode(section, true));
      log = document.getElementById('log');
    }
    log.removeAttribute('data-follow');
  }

  listen();
  follow();
  // "running for" and "waiting" grow between events too (now and then:
  // the events carry every change of state).
  setInterval(function () {
    if (document.querySelector('.state.running, .state.queued')) refreshSoon();
  }, 30000);
})();
)JS";

} // namespace kiln

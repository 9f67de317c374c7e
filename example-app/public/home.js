// The demo's home page: live (it refetches its live part whenever a run changes, over the viewer's
// live channel) and careful (Reset asks first). No inline scripts: the page's CSP forbids them.
(function () {
  'use strict';
  var body = document.body;
  var indicator = document.querySelector('[data-live-indicator]');

  document.addEventListener('submit', function (event) {
    var question = event.target && event.target.getAttribute && event.target.getAttribute('data-confirm');
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function setIndicator(state, text, detail) {
    indicator.textContent = text;
    indicator.setAttribute('data-state', state);
    indicator.title = detail;
  }

  // Swap in the server-rendered live part; an unchanged part stays as it is (a selection survives).
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    var target = document.querySelector('[data-fragment="live"]');
    fetch('/?fragment=live', { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.text();
      })
      .then(function (html) {
        var next = document.createElement('div');
        next.innerHTML = html;
        var ids = function (element) {
          return Array.prototype.map.call(element.children, function (child) {
            return child.id;
          }).join();
        };
        // The same sections: swap the changed ones only; sections came or went: the whole part.
        if (ids(next) !== ids(target)) target.innerHTML = html;
        else
          Array.prototype.slice.call(next.children).forEach(function (section) {
            var current = document.getElementById(section.id);
            if (current.outerHTML !== section.outerHTML) current.replaceWith(section);
          });
        body.setAttribute('data-refreshed', String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var path = body.getAttribute('data-socket-path');
  if (typeof io !== 'function') {
    setIndicator('off', 'not live', 'The socket.io client did not load: reload to see changes');
    return;
  }
  var socket = io(body.getAttribute('data-socket-namespace'), { path: path, transports: ['polling', 'websocket'] });
  socket.on('connect', function () {
    setIndicator('live', 'live', 'Live updates: run statuses change here as the worker runs them');
    socket.emit('subscribe', 'runs');
    // Catch up on what changed before the room was joined.
    refresh();
  });
  socket.on('change', refresh);
  socket.on('disconnect', function () {
    setIndicator('reconnecting', 'reconnecting…', 'Live connection lost; reconnecting');
  });
  socket.on('connect_error', function (error) {
    var status = error && typeof error.description === 'number' ? error.description : 0;
    if (status === 401 || status === 403) setIndicator('refused', 'not live: open the viewer and sign in', 'The live channel needs the viewer’s credentials (HTTP ' + status + ')');
    else setIndicator('reconnecting', 'reconnecting…', 'The live channel cannot be reached; retrying');
  });
})();

// durable-flow viewer: live updates and small conveniences. No inline scripts (the
// Content-Security-Policy forbids them); the page works without this file.
(function () {
  'use strict';
  var body = document.body;
  var base = body.getAttribute('data-base') || '';
  var room = body.getAttribute('data-live');
  var socketPath = body.getAttribute('data-socket-path');
  var namespace = body.getAttribute('data-socket-namespace') || '/durable_flow';
  // Which viewer router served this page: the server holds the socket to that mount's access rules.
  var viewer = body.getAttribute('data-socket-viewer');
  var indicator = document.querySelector('[data-live-indicator]');

  // Forms that change something ask first.
  document.addEventListener('submit', function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute('data-confirm');
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Lists: a link to a collapsed form (the Workflows page's "start a run") opens it.
  function openTarget() {
    var target = window.location.hash && document.getElementById(window.location.hash.slice(1));
    if (target && target.tagName === 'DETAILS') {
      target.open = true;
      var field = target.querySelector('textarea');
      if (field) field.focus();
    }
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();

  function setIndicator(state) {
    if (!indicator) return;
    indicator.textContent = state;
    indicator.setAttribute('data-state', state);
  }

  // Re-fetch each live fragment of this page (server-rendered, escaped HTML) and swap it in.
  var refreshing = false;
  var again = false;
  function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    var fragments = document.querySelectorAll('[data-fragment]');
    var jobs = [];
    fragments.forEach(function (element) {
      // A refused form is answered at its action's address: the page it shows is refreshed from its own.
      var url = new URL(body.getAttribute('data-page-url') || window.location.href, window.location.href);
      url.searchParams.set('fragment', element.getAttribute('data-fragment'));
      jobs.push(
        fetch(url.toString(), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
          .then(function (response) {
            if (!response.ok) throw new Error('HTTP ' + response.status);
            return response.text();
          })
          .then(function (html) {
            var open = Array.prototype.map.call(element.querySelectorAll('details[open]'), function (d) {
              return d.parentElement && d.parentElement.id;
            });
            element.innerHTML = html;
            open.forEach(function (id) {
              if (!id) return;
              var d = document.getElementById(id);
              var details = d && d.querySelector('details');
              if (details) details.open = true;
            });
            body.setAttribute('data-refreshed', String(Date.now()));
          })
      );
    });
    Promise.all(jobs)
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  var timer = null;
  function schedule() {
    if (timer) return;
    timer = setTimeout(function () {
      timer = null;
      refresh();
    }, 150);
  }

  if (room && socketPath && typeof io === 'function') {
    // A browser sends basic credentials unasked only under the path of the page that asked for them:
    // under the viewer's mount, WebSocket at once; elsewhere polling first, whose 401 challenge the
    // browser answers with them (the same realm), then the upgrade. Either falls back to the other.
    var underMount = socketPath.indexOf(base + '/') === 0;
    var socket = io(namespace, {
      path: socketPath,
      transports: underMount ? ['websocket', 'polling'] : ['polling', 'websocket'],
      tryAllTransports: true,
      query: viewer ? { viewer: viewer } : {},
    });
    socket.on('connect', function () {
      setIndicator('live');
      socket.emit('subscribe', room);
      // Catch up on what changed between rendering the page and joining the room (or while offline).
      schedule();
    });
    socket.on('disconnect', function () {
      setIndicator('offline');
    });
    socket.on('connect_error', function () {
      setIndicator('offline');
    });
    socket.on('change', schedule);
    window.addEventListener('beforeunload', function () {
      socket.close();
    });
  }
})();

// durable-flow viewer: live updates and small conveniences. No inline scripts (the
// Content-Security-Policy forbids them); the page works without this file.
(function () {
  'use strict';
  var body = document.body;
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

  // The live indicator says whether the page is live and, when not, why (its title says more).
  function setIndicator(state, text, detail) {
    if (!indicator) return;
    indicator.textContent = text || state;
    indicator.setAttribute('data-state', state);
    indicator.title = detail || 'Live updates: ' + (text || state);
  }

  // Why a connection attempt failed, in words: the refusal's own message when the server sent one.
  function refusal(error) {
    var status = error && typeof error.description === 'number' ? error.description : 0;
    var said = '';
    var xhr = error && error.context;
    if (xhr && typeof xhr.responseText === 'string') {
      try {
        said = JSON.parse(xhr.responseText).message || '';
      } catch {
        said = xhr.responseText;
      }
    }
    if (!status && error && error.message && !/poll error|websocket error|timeout/.test(error.message)) said = error.message;
    said = String(said).slice(0, 300);
    if (status === 401) return { refused: true, text: 'not live: sign-in refused', detail: said || 'The live channel asked for credentials and the browser sent none it accepts' };
    if (status === 403 || said) return { refused: true, text: 'not live: refused', detail: said || 'The live channel refused this page (HTTP 403)' };
    if (status) return { refused: true, text: 'not live: HTTP ' + status, detail: 'The live channel answered HTTP ' + status + (said ? ': ' + said : '') };
    // No status: the server could not be reached (a refusal said before stands, see connect_error).
    return { refused: false, text: 'reconnecting…', detail: 'The live channel cannot be reached; retrying' };
  }

  // Operator forms (data-keep) inside live fragments: what was typed, an open form and a refusal's
  // message survive the redraw of the fragment. A form the server refused starts out remembered.
  var kept = {};
  function keepKey(form) {
    return form && form.getAttribute && form.getAttribute('data-keep');
  }
  function remember(form) {
    var key = keepKey(form);
    if (!key) return;
    var values = {};
    Array.prototype.forEach.call(form.querySelectorAll('textarea, input:not([type="hidden"])'), function (field) {
      values[field.name] = field.value;
    });
    var error = form.querySelector('.form-error');
    kept[key] = { values: values, error: error && !error.hidden ? error.textContent : '' };
  }
  document.addEventListener('input', function (event) {
    remember(event.target && event.target.form);
  });
  document.querySelectorAll('form[data-keep][data-refused]').forEach(remember);
  function restoreKept(element) {
    element.querySelectorAll('form[data-keep]').forEach(function (form) {
      var state = kept[keepKey(form)];
      if (!state) return;
      Object.keys(state.values).forEach(function (name) {
        var field = form.querySelector('[name="' + name + '"]');
        if (field && field.type !== 'hidden') field.value = state.values[name];
      });
      var error = form.querySelector('.form-error');
      if (error && state.error) {
        error.textContent = state.error;
        error.hidden = false;
      }
      var details = form.closest('details');
      if (details) details.open = true;
    });
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
            var openOwn = Array.prototype.map.call(element.querySelectorAll('details[open][id]'), function (d) {
              return d.id;
            });
            element.innerHTML = html;
            open.forEach(function (id) {
              if (!id) return;
              var d = document.getElementById(id);
              var details = d && d.querySelector('details');
              if (details) details.open = true;
            });
            openOwn.forEach(function (id) {
              var d = document.getElementById(id);
              if (d && d.tagName === 'DETAILS') d.open = true;
            });
            restoreKept(element);
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

  if (!room && socketPath) {
    setIndicator('off', 'not live here', 'This page does not update live: reload it to see changes');
  } else if (room && socketPath && typeof io !== 'function') {
    setIndicator('off', 'not live: client missing', 'The socket.io client (assets/socket.io.min.js) did not load');
  } else if (room && socketPath) {
    // The socket path lies under this viewer's mount, so the router's access check guards it too.
    // Polling first: a browser sends basic credentials unasked only under the path of the page that
    // asked for them, but answers a polling request's 401 challenge with them (same realm); a
    // WebSocket handshake cannot answer one. The upgrade to WebSocket follows. (No fallback to a
    // WebSocket handshake: a refused poll's status and message are what the indicator shows.)
    var socket = io(namespace, {
      path: socketPath,
      transports: ['polling', 'websocket'],
      query: viewer ? { viewer: viewer } : {},
    });
    socket.on('connect', function () {
      setIndicator('live');
      socket.emit('subscribe', room);
      // Catch up on what changed between rendering the page and joining the room (or while offline).
      schedule();
    });
    socket.on('disconnect', function (reason) {
      if (reason === 'io server disconnect') setIndicator('refused', 'not live: disconnected', 'The server ended the live connection (access revoked?); reload to try again');
      else setIndicator('reconnecting', 'reconnecting…', 'Live connection lost (' + reason + '); reconnecting');
    });
    socket.on('connect_error', function (error) {
      var why = refusal(error);
      if (!why.refused && indicator && indicator.getAttribute('data-state') === 'refused') return;
      setIndicator(why.refused ? 'refused' : 'reconnecting', why.text, why.detail);
    });
    socket.on('change', schedule);
    window.addEventListener('beforeunload', function () {
      socket.close();
    });
  }
})();

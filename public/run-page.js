// durable-flow viewer, run page: Send matching event. The form works without this file (a plain POST
// to the send-event action); with it, the payload's JSON is checked before sending and an error is
// shown in the form, which keeps what was typed, and the run page stays open.
(function () {
  'use strict';

  // The live channel redraws the page from the server whenever the run changes: what was typed into a
  // form is put back into the form of the same wait.
  var edits = {};
  function fields(form) {
    return { name: form.querySelector('[name="name"]'), payload: form.querySelector('[name="payload"]') };
  }
  function remember(event) {
    var form = event.target && event.target.form;
    if (!form || !form.hasAttribute('data-send-event')) return;
    var f = fields(form);
    edits[form.getAttribute('data-wait')] = { name: f.name.value, payload: f.payload.value };
  }
  document.addEventListener('input', remember);
  new window.MutationObserver(function () {
    document.querySelectorAll('form[data-send-event]').forEach(function (form) {
      var wait = form.getAttribute('data-wait');
      var edit = edits[wait];
      if (!edit) return;
      var f = fields(form);
      if (f.name.value !== edit.name) f.name.value = edit.name;
      if (f.payload.value !== edit.payload) f.payload.value = edit.payload;
    });
  }).observe(document.body, { childList: true, subtree: true });

  function show(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!form || !form.hasAttribute || !form.hasAttribute('data-send-event')) return;
    event.preventDefault();
    var error = form.querySelector('.form-error');
    var status = form.querySelector('.form-status');
    var payload = form.querySelector('textarea[name="payload"]');
    var button = form.querySelector('button[type="submit"]');
    show(status, '');
    try {
      JSON.parse(payload.value.trim() === '' ? '{}' : payload.value);
    } catch (parseError) {
      payload.setAttribute('aria-invalid', 'true');
      // V8 ends its message with the text near the error and ' is not valid JSON': keep the first.
      show(error, 'The payload is not valid JSON: ' + parseError.message.replace(/ is not valid JSON$/, '') + '. Nothing was sent.');
      payload.focus();
      return;
    }
    payload.removeAttribute('aria-invalid');
    show(error, '');
    button.disabled = true;
    fetch(form.action, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(new window.FormData(form)).toString(),
    })
      .then(function (response) {
        return response.json().then(
          function (body) {
            return { ok: response.ok, body: body };
          },
          function () {
            return { ok: false, body: { error: 'HTTP ' + response.status } };
          }
        );
      })
      .then(function (answer) {
        if (!answer.ok) throw new Error(answer.body.error || 'The event was not sent');
        var event = answer.body.event || {};
        var matched = typeof event.matchedWaits === 'number' ? event.matchedWaits : null;
        show(status, event.duplicate ? 'An event with that id was sent before: nothing new was sent.' : matched === 0 ? 'Sent, but it matched no wait: check the payload against the match.' : 'Sent: it matched ' + (matched === null ? 'the wait' : matched + ' wait' + (matched === 1 ? '' : 's')) + '. The run wakes up…');
        if (matched === 0) {
          button.disabled = false;
          return;
        }
        // The live channel redraws the page; without it, load it again.
        var indicator = document.querySelector('[data-live-indicator]');
        if (!indicator || indicator.getAttribute('data-state') !== 'live') window.location.reload();
      })
      .catch(function (sendError) {
        show(error, sendError.message);
        button.disabled = false;
      });
  });
})();

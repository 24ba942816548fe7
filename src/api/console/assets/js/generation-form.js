// The controls of the create form and the request body they make. One form covers both
// endpoints: text-to-image (POST /v1/generations) and edit (POST /v1/edits, which adds 1–4
// `image_urls`: https URLs or data: URIs, a chosen file becoming a data: URI). Every FLUX.2 field
// is here with the validator's bounds (catalog.js): `image_size` as a preset or custom
// width × height, `guidance_scale`, `num_images`, `seed` (64-bit: sent exactly, as BigInt),
// `output_format`, the three booleans, [dev]'s `acceleration` and `num_inference_steps`, and
// fluxgate's `model`, `end_user`, `metadata`, `webhook_url` and `cache`. Each control sits in a
// wrapper whose `data-field` is the API's field name, so 422 errors land beside it.
import { h, replace, field, safeUrl } from '/console/js/dom.js';
import { getCatalog, isDevModel } from '/console/js/catalog.js';

const CUSTOM = 'custom';

/** Builds the controls; `onChange()` runs on every edit. `lockedEndUser` comes from a browser token. */
export function generationForm({ onChange, lockedEndUser }) {
  const cat = getCatalog();
  const F = cat.fields;
  const changed = () => onChange();
  let mode = 'generate';
  let sizeTouched = false;

  const modeGen = h('input', { type: 'radio', name: 'mode', value: 'generate', checked: true, 'data-testid': 'create-mode-generate' });
  const modeEdit = h('input', { type: 'radio', name: 'mode', value: 'edit', 'data-testid': 'create-mode-edit' });
  const modeSet = h('fieldset', { class: 'mode-toggle' }, h('legend', null, 'Kind'),
    h('label', { class: 'seg' }, modeGen, h('span', null, 'Generate')),
    h('label', { class: 'seg' }, modeEdit, h('span', null, 'Edit images')));

  const model = h('select', { 'data-testid': 'create-model' }, cat.models.map((m) => h('option', { value: m.id, selected: m.id === cat.defaultModel }, `${m.label}${m.pricePerMp ? ` — $${m.pricePerMp}/MP` : ''}`)));
  const prompt = h('textarea', { rows: '4', required: true, placeholder: 'a lighthouse at dusk, oil painting', 'data-testid': 'create-prompt' });

  const size = h('select', { 'data-testid': 'create-image-size' },
    cat.presets.map((p) => h('option', { value: p.name }, p.width ? `${p.name} — ${p.width} × ${p.height}` : p.name)),
    h('option', { value: CUSTOM }, 'custom width × height'));
  size.value = cat.defaultPreset.generate;
  const width = h('input', { type: 'number', min: String(cat.side.min), max: String(cat.side.max), step: '1', value: '1024', 'data-testid': 'create-width', inputmode: 'numeric' });
  const height = h('input', { type: 'number', min: String(cat.side.min), max: String(cat.side.max), step: '1', value: '768', 'data-testid': 'create-height', inputmode: 'numeric' });
  const custom = h('div', { class: 'field-row', hidden: true },
    field({ label: 'Width (px)', control: width, name: 'image_size.width', hint: `${cat.side.min}–${cat.side.max}` }),
    field({ label: 'Height (px)', control: height, name: 'image_size.height', hint: `${cat.side.min}–${cat.side.max}` }));

  const numImages = h('input', { type: 'number', min: String(F.num_images.min), max: String(F.num_images.max), step: '1', value: String(F.num_images.default), 'data-testid': 'create-num-images' });
  const guidance = h('input', { type: 'number', min: String(F.guidance_scale.min), max: String(F.guidance_scale.max), step: String(F.guidance_scale.step || 0.1), value: String(F.guidance_scale.default), 'data-testid': 'create-guidance' });
  const seed = h('input', { type: 'text', inputmode: 'numeric', pattern: '[0-9]*', placeholder: 'random', autocomplete: 'off', 'data-testid': 'create-seed' });
  const format = h('select', { 'data-testid': 'create-output-format' }, F.output_format.enum.map((f) => h('option', { value: f, selected: f === F.output_format.default }, f)));
  const safety = h('input', { type: 'checkbox', checked: F.enable_safety_checker.default, 'data-testid': 'create-safety' });
  const expansion = h('input', { type: 'checkbox', checked: F.enable_prompt_expansion.default, 'data-testid': 'create-expansion' });
  const syncMode = h('input', { type: 'checkbox', checked: F.sync_mode.default, 'data-testid': 'create-sync-mode' });
  const acceleration = h('select', { 'data-testid': 'create-acceleration' }, F.acceleration.enum.map((a) => h('option', { value: a, selected: a === F.acceleration.default }, a)));
  const steps = h('input', { type: 'number', min: String(F.num_inference_steps.min), max: String(F.num_inference_steps.max), step: '1', value: String(F.num_inference_steps.default), 'data-testid': 'create-steps' });
  const devFields = h('div', { class: 'field-row', hidden: true },
    field({ label: 'Acceleration', control: acceleration, name: 'acceleration', hint: 'FLUX.2 [dev] only' }),
    field({ label: 'Inference steps', control: steps, name: 'num_inference_steps', hint: `${F.num_inference_steps.min}–${F.num_inference_steps.max}, [dev] only` }));

  const endUser = h('input', { type: 'text', maxlength: String(F.end_user.maxLength), autocomplete: 'off', 'data-testid': 'create-end-user' });
  if (lockedEndUser) { endUser.value = lockedEndUser; endUser.readOnly = true; }
  const metadata = h('textarea', { rows: '2', placeholder: '{"order": "A-17"}', spellcheck: 'false', 'data-testid': 'create-metadata' });
  const webhook = h('input', { type: 'url', placeholder: 'https://hooks.example.com/one-off', autocomplete: 'off', 'data-testid': 'create-webhook-url' });
  const cache = h('input', { type: 'checkbox', checked: true, 'data-testid': 'create-cache' });

  // Edit sources: up to 4 rows of URL inputs, and a file picker that adds data: URIs.
  const urlRows = h('div', { class: 'url-rows' });
  const addUrl = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'create-add-url' }, 'Add URL');
  const file = h('input', { type: 'file', accept: 'image/*', multiple: true, 'data-testid': 'create-file' });
  const fileLabel = h('label', { class: 'btn btn-small file-btn' }, 'Add files…', file);
  const sources = h('fieldset', { class: 'field sources-field', hidden: true, dataset: { field: 'image_urls' } },
    h('legend', null, `Source images (${F.image_urls.minItems}–${F.image_urls.maxItems})`),
    urlRows, h('div', { class: 'button-row' }, addUrl, fileLabel),
    h('p', { class: 'hint' }, 'https URLs, or files from this machine sent as data: URIs (each also billed as 1 MP).'),
    h('p', { class: 'field-error', id: 'image-urls-error', hidden: true }));

  function urlRow(value = '') {
    const input = h('input', { type: 'text', value, placeholder: 'https://… or data:image/…', spellcheck: 'false', autocomplete: 'off', 'aria-label': 'Source image URL', 'data-testid': 'create-image-url' });
    const preview = h('span', { class: 'url-preview' });
    const remove = h('button', { type: 'button', class: 'btn btn-small btn-quiet', 'aria-label': 'Remove this source' }, 'Remove');
    const wrap = h('div', { class: 'field url-row' }, preview, input, remove, h('p', { class: 'field-error', hidden: true }));
    const show = () => {
      const src = safeUrl(input.value.trim(), { image: true });
      replace(preview, src && !src.startsWith('#') ? h('img', { src, alt: '', class: 'source-thumb' }) : null);
      if (input.value.startsWith('data:')) input.title = `data: URI, ${Math.round(input.value.length / 1024)} KiB`;
    };
    input.addEventListener('change', show);
    remove.addEventListener('click', () => { wrap.remove(); renumber(); changed(); });
    show();
    return wrap;
  }

  function renumber() {
    [...urlRows.children].forEach((row, i) => { row.dataset.field = `image_urls[${i}]`; });
    const full = urlRows.children.length >= F.image_urls.maxItems;
    addUrl.disabled = full;
    file.disabled = full;
  }

  function addSource(value) {
    if (urlRows.children.length >= F.image_urls.maxItems) return;
    urlRows.appendChild(urlRow(value));
    renumber();
  }

  addUrl.addEventListener('click', () => { addSource(''); urlRows.lastChild.querySelector('input').focus(); });
  file.addEventListener('change', async () => {
    for (const f of [...file.files]) {
      if (urlRows.children.length >= F.image_urls.maxItems) break;
      if (!/^image\//.test(f.type)) continue;
      const uri = await readAsDataUri(f);
      if (uri) {
        const empty = [...urlRows.querySelectorAll('input')].find((i) => !i.value.trim());
        if (empty) { empty.value = uri; empty.dispatchEvent(new Event('change')); } else addSource(uri);
      }
    }
    file.value = '';
    changed();
  });

  const sizeField = field({ label: 'Image size', control: size, name: 'image_size' });
  const el = h('div', { class: 'gen-form' },
    modeSet,
    field({ label: 'Model', control: model, name: 'model' }),
    field({ label: 'Prompt', control: prompt, name: 'prompt' }),
    sources,
    h('div', { class: 'field-row' }, sizeField, field({ label: 'Images', control: numImages, name: 'num_images', hint: `${F.num_images.min}–${F.num_images.max}` })),
    custom,
    h('div', { class: 'field-row' },
      field({ label: 'Guidance scale', control: guidance, name: 'guidance_scale', hint: `${F.guidance_scale.min}–${F.guidance_scale.max}, default ${F.guidance_scale.default}` }),
      field({ label: 'Seed', control: seed, name: 'seed', hint: 'empty: fal picks one; with a seed, an identical request is answered from the cache' }),
      field({ label: 'Output format', control: format, name: 'output_format' })),
    devFields,
    h('div', { class: 'checks-row' },
      check(safety, 'Safety checker', 'enable_safety_checker'),
      check(expansion, 'Prompt expansion', 'enable_prompt_expansion'),
      check(syncMode, 'Sync mode (images inline; needs an image store)', 'sync_mode')),
    h('div', { class: 'field-row' },
      field({ label: 'End user', control: endUser, name: 'end_user', hint: lockedEndUser ? 'set by your browser token' : 'your own user id, for per-user limits and usage (optional)' }),
      field({ label: 'Metadata (JSON object, optional)', control: metadata, name: 'metadata', hint: 'at most 4 KiB; echoed in every event' })),
    h('details', { class: 'advanced' }, h('summary', null, 'Callback and cache'),
      h('div', { class: 'field-row' },
        field({ label: 'webhook_url (optional)', control: webhook, name: 'webhook_url', hint: 'a one-off signed callback for this generation\'s events' }),
        check(cache, 'Use the seed cache', 'cache'))));

  function syncVisibility() {
    custom.hidden = size.value !== CUSTOM;
    devFields.hidden = !isDevModel(model.value);
    sources.hidden = mode !== 'edit';
  }

  function setMode(next) {
    mode = next === 'edit' ? 'edit' : 'generate';
    modeGen.checked = mode === 'generate';
    modeEdit.checked = mode === 'edit';
    if (!sizeTouched) size.value = cat.defaultPreset[mode];
    if (mode === 'edit' && urlRows.children.length === 0) addSource('');
    syncVisibility();
  }

  modeGen.addEventListener('change', () => { setMode('generate'); changed(); });
  modeEdit.addEventListener('change', () => { setMode('edit'); changed(); });
  size.addEventListener('change', () => { sizeTouched = true; syncVisibility(); });
  model.addEventListener('change', syncVisibility);
  el.addEventListener('input', changed);
  el.addEventListener('change', changed);

  /** The request body, and local errors (seed, metadata) the server cannot be asked about. */
  function read() {
    const errors = [];
    const body = { prompt: prompt.value, model: model.value };
    if (size.value === CUSTOM) body.image_size = { width: int(width, 'image_size.width', errors), height: int(height, 'image_size.height', errors) };
    else body.image_size = size.value;
    setNum(body, 'num_images', numImages, errors, true);
    setNum(body, 'guidance_scale', guidance, errors, false);
    const s = seed.value.trim();
    if (s) {
      if (!/^\d+$/.test(s)) errors.push({ field: 'seed', message: 'must be a whole number from 0 to 9223372036854775807' });
      else if (BigInt(s) > F.seed.max) errors.push({ field: 'seed', message: `must be at most ${F.seed.max}` });
      else body.seed = BigInt(s);
    }
    body.output_format = format.value;
    body.enable_safety_checker = safety.checked;
    body.enable_prompt_expansion = expansion.checked;
    body.sync_mode = syncMode.checked;
    if (isDevModel(model.value)) {
      body.acceleration = acceleration.value;
      setNum(body, 'num_inference_steps', steps, errors, true);
    }
    if (mode === 'edit') body.image_urls = [...urlRows.querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
    if (!lockedEndUser && endUser.value.trim()) body.end_user = endUser.value.trim();
    const m = metadata.value.trim();
    if (m) {
      try {
        const v = JSON.parse(m);
        if (v && typeof v === 'object' && !Array.isArray(v)) body.metadata = v;
        else errors.push({ field: 'metadata', message: 'must be a JSON object, like {"order": "A-17"}' });
      } catch (err) {
        errors.push({ field: 'metadata', message: `is not valid JSON: ${err.message}` });
      }
    }
    if (webhook.value.trim()) body.webhook_url = webhook.value.trim();
    if (!cache.checked) body.cache = false;
    return { body, errors, mode, endpoint: mode === 'edit' ? '/v1/edits' : '/v1/generations' };
  }

  /** Fills the form from an existing generation (`#/new?from=gen_…`). */
  function prefill(g) {
    const input = g.input || {};
    const edit = /\/edit$/.test(String(g.model || '')) || Array.isArray(input.image_urls);
    const family = String(g.model || '').replace(/\/edit$/, '');
    if ([...model.options].some((o) => o.value === family)) model.value = family;
    prompt.value = String(input.prompt || '');
    if (input.image_size_preset && [...size.options].some((o) => o.value === input.image_size_preset)) size.value = input.image_size_preset;
    else if (input.image_size && typeof input.image_size === 'object') {
      size.value = CUSTOM;
      width.value = String(input.image_size.width);
      height.value = String(input.image_size.height);
    }
    sizeTouched = true;
    if (input.num_images !== undefined) numImages.value = String(input.num_images);
    if (input.guidance_scale !== undefined) guidance.value = String(input.guidance_scale);
    if (input.seed !== undefined && input.seed !== null) seed.value = String(input.seed);
    if (input.output_format) format.value = String(input.output_format);
    if (typeof input.enable_safety_checker === 'boolean') safety.checked = input.enable_safety_checker;
    if (typeof input.enable_prompt_expansion === 'boolean') expansion.checked = input.enable_prompt_expansion;
    if (typeof input.sync_mode === 'boolean') syncMode.checked = input.sync_mode;
    if (input.acceleration) acceleration.value = String(input.acceleration);
    if (input.num_inference_steps !== undefined) steps.value = String(input.num_inference_steps);
    if (!lockedEndUser && g.end_user) endUser.value = String(g.end_user);
    if (g.metadata) metadata.value = JSON.stringify(g.metadata, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    replace(urlRows);
    setMode(edit ? 'edit' : 'generate');
    if (edit) {
      replace(urlRows);
      for (const u of (input.image_urls || []).slice(0, F.image_urls.maxItems)) addSource(String(u));
      if (!urlRows.children.length) addSource('');
    }
    syncVisibility();
  }

  syncVisibility();
  return { el, read, prefill, setMode, focus: () => prompt.focus(), get mode() { return mode; } };
}

function check(box, label, name) {
  return h('div', { class: 'field field-check', dataset: { field: name } }, h('label', null, box, ' ', label), h('p', { class: 'field-error', hidden: true }));
}

function int(input, name, errors) {
  if (input.validity && input.validity.badInput) { errors.push({ field: name, message: 'must be a whole number' }); return null; }
  const n = Number(input.value);
  if (input.value === '' || !Number.isFinite(n)) { errors.push({ field: name, message: 'is required' }); return null; }
  return n;
}

function setNum(body, name, input, errors, integer) {
  if (input.validity && input.validity.badInput) { errors.push({ field: name, message: integer ? 'must be a whole number' : 'must be a number' }); return; }
  if (input.value === '') return; // the server's default
  const n = Number(input.value);
  if (!Number.isFinite(n)) { errors.push({ field: name, message: 'must be a number' }); return; }
  body[name] = n;
}

function readAsDataUri(fileObj) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(typeof reader.result === 'string' ? reader.result : null);
    reader.onerror = () => resolve(null);
    reader.readAsDataURL(fileObj);
  });
}

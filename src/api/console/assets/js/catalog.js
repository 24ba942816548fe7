// The FLUX.2 catalogue the create form is built from: models (text-to-image and edit), the
// named `image_size` presets and their pixels, custom sides 512–2048, and every input field's
// type, default, bounds and enum — as `src/fal/models.rs` and `models/validate.rs` define them.
// The built-in copy below mirrors that code; at run time `loadCatalog()` refines it from
// `/openapi.json` (same origin, no key), whose schemas are generated from the same validator,
// so a model or preset added on the server shows up without editing this file.

const BUILTIN = {
  models: [
    { id: 'fal-ai/flux-2/turbo', label: 'FLUX.2 Turbo', pricePerMp: 0.008, dev: false },
    { id: 'fal-ai/flux-2/flash', label: 'FLUX.2 Flash', pricePerMp: 0.005, dev: false },
    { id: 'fal-ai/flux-2', label: 'FLUX.2 [dev]', pricePerMp: 0.012, dev: true },
  ],
  defaultModel: 'fal-ai/flux-2/turbo',
  presets: [
    { name: 'square_hd', width: 1024, height: 1024 },
    { name: 'square', width: 512, height: 512 },
    { name: 'portrait_4_3', width: 768, height: 1024 },
    { name: 'portrait_16_9', width: 576, height: 1024 },
    { name: 'landscape_4_3', width: 1024, height: 768 },
    { name: 'landscape_16_9', width: 1024, height: 576 },
  ],
  // fal's edit endpoints default to square_hd, text-to-image to landscape_4_3.
  defaultPreset: { generate: 'landscape_4_3', edit: 'square_hd' },
  side: { min: 512, max: 2048 },
  fields: {
    guidance_scale: { min: 0, max: 20, default: 2.5, step: 0.1 },
    num_images: { min: 1, max: 4, default: 1 },
    seed: { min: 0n, max: 9223372036854775807n },
    output_format: { enum: ['jpeg', 'png', 'webp'], default: 'png' },
    enable_safety_checker: { default: true },
    enable_prompt_expansion: { default: false },
    sync_mode: { default: false },
    acceleration: { enum: ['none', 'regular', 'high'], default: 'regular' },
    num_inference_steps: { min: 4, max: 50, default: 28 },
    end_user: { maxLength: 255 },
    image_urls: { minItems: 1, maxItems: 4 },
  },
  metadataMaxBytes: 4096,
  statuses: ['accepted', 'queued', 'completed', 'failed', 'cancelled'],
  eventTypes: [
    'generation.queued', 'generation.completed', 'generation.failed', 'generation.cancelled',
    'subscription.disabled', 'delivery.exhausted',
    'alert.fal_error_rate', 'alert.fal_error_rate_recovered',
    'alert.delivery_failure_rate', 'alert.delivery_failure_rate_recovered', 'test.ping',
  ],
  deliveryStatuses: ['pending', 'succeeded', 'failed', 'exhausted', 'cancelled'],
};

let catalog = BUILTIN;
let loading = null;

/** The catalogue (the built-in one until loadCatalog() has refined it). */
export function getCatalog() {
  return catalog;
}

/** Every model id the gallery filter offers: each text-to-image model and its edit endpoint. */
export function allModelIds() {
  const ids = [];
  for (const m of catalog.models) ids.push(m.id, `${m.id}/edit`);
  return ids;
}

export function modelInfo(id) {
  const family = String(id || '').replace(/\/edit$/, '');
  return catalog.models.find((m) => m.id === family) || null;
}

export function presetSize(name) {
  return catalog.presets.find((p) => p.name === name) || null;
}

/** Refines the catalogue from /openapi.json once; keeps the built-in one if that fails. */
export function loadCatalog() {
  if (!loading) {
    loading = fetch('/openapi.json', { credentials: 'omit', cache: 'no-cache', headers: { Accept: 'application/json' } })
      .then((res) => (res.ok ? res.json() : null))
      .then((doc) => {
        if (doc) catalog = refine(BUILTIN, doc);
        return catalog;
      })
      .catch(() => catalog);
  }
  return loading;
}

function refine(base, doc) {
  const schemas = (doc && doc.components && doc.components.schemas) || {};
  const props = (schemas.GenerationRequest && schemas.GenerationRequest.properties) || null;
  if (!props) return base;
  const next = { ...base, fields: { ...base.fields } };
  const modelEnum = props.model && Array.isArray(props.model.enum) ? props.model.enum.filter((m) => typeof m === 'string') : null;
  if (modelEnum && modelEnum.length) {
    next.models = modelEnum.map((id) => base.models.find((m) => m.id === id) || { id, label: id, pricePerMp: null, dev: false });
    if (typeof props.model.default === 'string') next.defaultModel = props.model.default;
  }
  const size = props.image_size && Array.isArray(props.image_size.oneOf) ? props.image_size.oneOf : [];
  const names = size.find((s) => Array.isArray(s.enum));
  if (names) next.presets = names.enum.filter((n) => typeof n === 'string').map((name) => base.presets.find((p) => p.name === name) || { name, width: null, height: null });
  const custom = size.find((s) => s.properties && s.properties.width);
  if (custom && Number.isFinite(custom.properties.width.minimum) && Number.isFinite(custom.properties.width.maximum)) {
    next.side = { min: custom.properties.width.minimum, max: custom.properties.width.maximum };
  }
  for (const name of ['guidance_scale', 'num_images', 'num_inference_steps']) {
    const p = props[name];
    if (!p) continue;
    const f = { ...next.fields[name] };
    if (Number.isFinite(p.minimum)) f.min = p.minimum;
    if (Number.isFinite(p.maximum)) f.max = p.maximum;
    if (Number.isFinite(p.default)) f.default = p.default;
    next.fields[name] = f;
  }
  for (const name of ['output_format', 'acceleration']) {
    const p = props[name];
    if (p && Array.isArray(p.enum)) next.fields[name] = { ...next.fields[name], enum: p.enum, default: p.default ?? next.fields[name].default };
  }
  for (const name of ['enable_safety_checker', 'enable_prompt_expansion', 'sync_mode']) {
    const p = props[name];
    if (p && typeof p.default === 'boolean') next.fields[name] = { ...next.fields[name], default: p.default };
  }
  if (props.end_user && Number.isFinite(props.end_user.maxLength)) next.fields.end_user = { maxLength: props.end_user.maxLength };
  const edit = schemas.EditRequest && schemas.EditRequest.properties && schemas.EditRequest.properties.image_urls;
  if (edit && Number.isFinite(edit.maxItems)) next.fields.image_urls = { minItems: edit.minItems ?? 1, maxItems: edit.maxItems };
  if (schemas.GenerationStatus && Array.isArray(schemas.GenerationStatus.enum)) next.statuses = schemas.GenerationStatus.enum;
  if (schemas.EventType && Array.isArray(schemas.EventType.enum)) next.eventTypes = schemas.EventType.enum;
  if (schemas.DeliveryStatus && Array.isArray(schemas.DeliveryStatus.enum)) next.deliveryStatuses = schemas.DeliveryStatus.enum;
  return next;
}

/** Whether a model takes FLUX.2 [dev]'s extra fields (acceleration, num_inference_steps). */
export function isDevModel(id) {
  const m = modelInfo(id);
  if (m) return Boolean(m.dev) || m.id === 'fal-ai/flux-2';
  return String(id).replace(/\/edit$/, '') === 'fal-ai/flux-2';
}

/**
 * Standard Webhooks secrets (spec/standard-webhooks.md, "Signature scheme"): `whsec_` followed by
 * the base64 of the key bytes. fenliu signs outbound deliveries and verifies platform callbacks
 * with such keys only, so that every off-the-shelf Standard Webhooks verifier agrees with it; a
 * plain string is refused at config check rather than silently signed in a way those verifiers
 * reject.
 */
import { randomBytes } from 'node:crypto';

export const WEBHOOK_SECRET_PREFIX = 'whsec_';
/** The spec's recommended key size range, in bytes. */
export const WEBHOOK_KEY_MIN_BYTES = 24;
export const WEBHOOK_KEY_MAX_BYTES = 64;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * A new random secret in Standard Webhooks form (32 random bytes by default), for `adapter new`,
 * docs and operators: `whsec_<base64>`.
 */
export function generateWebhookSecret(bytes = 32): string {
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(bytes).toString('base64')}`;
}

/** The HMAC key of a `whsec_` secret. Throws on anything else (config check refuses those first). */
export function webhookKey(secret: string): Buffer {
  const problem = webhookSecretProblem(secret);
  if (problem) throw new Error(problem);
  return Buffer.from(secret.slice(WEBHOOK_SECRET_PREFIX.length), 'base64');
}

/**
 * Why `secret` is not a usable Standard Webhooks secret, or undefined when it is. The message
 * says how to convert a plain secret without printing it: `whsec_` + base64 of its bytes keeps
 * the very same HMAC key, so a receiver that used the plain bytes keeps verifying.
 */
export function webhookSecretProblem(secret: string): string | undefined {
  const generate = `generate a new one with: node -e "console.log('whsec_'+require('crypto').randomBytes(32).toString('base64'))"`;
  const convert = `convert a plain secret with: printf %s "$SECRET" | base64 -w0 (and put whsec_ in front), or ${generate}`;
  if (!secret.startsWith(WEBHOOK_SECRET_PREFIX)) {
    const n = Buffer.byteLength(secret);
    // Converting keeps the key bytes, so a plain secret of the wrong size cannot be converted.
    const how = n < WEBHOOK_KEY_MIN_BYTES || n > WEBHOOK_KEY_MAX_BYTES ? `it is ${n} bytes, so it cannot be converted as it is: ${generate}` : convert;
    return `is not a Standard Webhooks secret (whsec_<base64 of ${WEBHOOK_KEY_MIN_BYTES}-${WEBHOOK_KEY_MAX_BYTES} bytes>): ${how}`;
  }
  const b64 = secret.slice(WEBHOOK_SECRET_PREFIX.length);
  if (!b64 || !BASE64.test(b64)) return `has the whsec_ prefix but what follows is not base64: ${convert}`;
  const n = Buffer.from(b64, 'base64').length;
  if (n < WEBHOOK_KEY_MIN_BYTES || n > WEBHOOK_KEY_MAX_BYTES) {
    return `decodes to ${n} bytes; Standard Webhooks keys are ${WEBHOOK_KEY_MIN_BYTES} to ${WEBHOOK_KEY_MAX_BYTES} bytes: ${convert}`;
  }
  return undefined;
}

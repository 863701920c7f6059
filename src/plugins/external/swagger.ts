import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { parse } from 'yaml';
import { ROOT, readJson } from '../../schemas.js';

/**
 * openapi/openapi.yaml is the source of truth; it $refs the JSON Schemas in schemas/. Served
 * bundled (the schemas inlined under components) so clients need one document.
 */
export function bundledOpenApi(): Record<string, any> {
  // The files do not change while the process runs; a process that builds several apps (the tests
  // do) parses them once. A copy each time: the swagger plugin may add to what it gets.
  bundled ??= bundle();
  return structuredClone(bundled);
}

let bundled: Record<string, any> | undefined;

function bundle(): Record<string, any> {
  const doc = parse(readFileSync(join(ROOT, 'openapi', 'openapi.yaml'), 'utf8'));
  const files = new Map<string, string>();
  const rewrite = (v: any): any => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (v && typeof v === 'object') {
      if (typeof v.$ref === 'string' && v.$ref.startsWith('../schemas/')) {
        const [file, frag] = v.$ref.slice('../schemas/'.length).split('#');
        const name = files.get(file) ?? inlineSchema(file);
        return { $ref: `#/components/schemas/${name}${frag ? frag.replace(/^\/\$defs\//, '/$defs/') : ''}` };
      }
      const out: Record<string, any> = {};
      for (const [k, x] of Object.entries(v)) out[k] = rewrite(x);
      return out;
    }
    return v;
  };
  const inlineSchema = (file: string): string => {
    const schema = readJson<Record<string, any>>(join(ROOT, 'schemas', file));
    const name = String(schema.title ?? file).replace(/[^A-Za-z0-9]/g, '');
    files.set(file, name);
    // Internal refs (#/$defs/x) must point into the inlined copy.
    const fix = (v: any): any => {
      if (Array.isArray(v)) return v.map(fix);
      if (v && typeof v === 'object') {
        const out: Record<string, any> = {};
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string' && x.startsWith('#/')) out[k] = `#/components/schemas/${name}/${x.slice(2)}`;
          else if (k === '$schema' || k === '$id') continue;
          else out[k] = fix(x);
        }
        return out;
      }
      return v;
    };
    doc.components ??= {};
    doc.components.schemas ??= {};
    doc.components.schemas[name] = fix(schema);
    return name;
  };
  return rewrite(doc);
}

export default fp(
  async (app) => {
    await app.register(swagger, { mode: 'static', specification: { document: bundledOpenApi() as any } });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'fenliu-swagger' },
);

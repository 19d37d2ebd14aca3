// Test peer: a real oidc-provider (pinned in package.json) with a scripted headless login/consent.
// Usage: node server.mjs CONFIG.json     (see tests/peers/oidc.py for the config shape)
// Prints exactly one line "READY <port>" on stdout once listening.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const host = cfg.host ?? '127.0.0.1';
const interactive = cfg.interactive === true;
const resources = cfg.resources ?? {}; // { "<indicator>" | "*": { scope, accessTokenFormat, audience } }
const stats = { token: {}, revocation: 0, introspection: 0, authorization: 0 };
const resetStats = () => Object.assign(stats, { token: {}, revocation: 0, introspection: 0, authorization: 0 });

// Listen first (port 0 = ephemeral, no race), then build the provider with the real issuer.
const server = createServer();
await new Promise((resolve) => server.listen(cfg.port ?? 0, host, resolve));
const { port } = server.address();
const issuer = cfg.issuer ?? `http://${host}:${port}`;

const capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);
const provider = new Provider(issuer, {
  clients: cfg.clients ?? [],
  cookies: { keys: ['alter-mcp-test-peer-cookie-key'] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.test`, email_verified: true, name: capitalize(id) }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', ...(cfg.scopes ?? [])],
  conformIdTokenClaims: false, // scope-derived claims (email, name) also go into the ID token
  pkce: { required: () => true }, // v9 knows S256 only
  rotateRefreshToken: true, // reusing a rotated (consumed) refresh token revokes the whole grant
  // Permissive: any client allowed the refresh_token grant gets one (no offline_access/prompt=consent dance).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: cfg.ttl ?? {},
  // Seconds of leeway on expiry checks (oidc-provider's default is 15); tests of expired tokens set 0.
  ...(cfg.clockTolerance === undefined ? {} : { clockTolerance: cfg.clockTolerance }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: interactive },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => cfg.useGrantedResource === true,
      getResourceServerInfo: async (_ctx, indicator) => {
        const rs = resources[indicator] ?? resources['*'];
        if (!rs) throw new errors.InvalidTarget();
        return { scope: rs.scope ?? '', audience: rs.audience ?? indicator, accessTokenFormat: rs.accessTokenFormat ?? 'jwt' };
      },
    },
  },
});

// Stats: GET /__stats, POST /__stats/reset; counts requests that reached the token-family endpoints.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__stats' && ctx.method === 'GET') { ctx.body = stats; return undefined; }
  if (ctx.path === '/__stats/reset' && ctx.method === 'POST') { resetStats(); ctx.body = stats; return undefined; }
  await next();
  if (ctx.path === '/auth') stats.authorization += 1;
  if (ctx.method !== 'POST') return undefined;
  if (ctx.path === '/token') {
    const gt = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type ?? 'unknown';
    stats.token[gt] = (stats.token[gt] ?? 0) + 1;
  } else if (ctx.path === '/token/revocation') stats.revocation += 1;
  else if (ctx.path === '/token/introspection') stats.introspection += 1;
  return undefined;
});

// Scripted headless login + consent (login_hint names the account; "deny" refuses).
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
  if (interactive || !match || ctx.method !== 'GET') return next();
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    ctx.status = 400;
    ctx.body = { error: err.name, error_description: err.message };
    return undefined;
  }
  const { prompt, params, session, grantId } = details;
  const hint = params.login_hint || 'alice';
  let result;
  if (hint === 'deny') {
    result = { error: 'access_denied', error_description: 'scripted denial (login_hint=deny)' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: hint } };
  } else {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  return provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
});

server.on('request', provider.callback());
process.stdout.write(`READY ${port}\n`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

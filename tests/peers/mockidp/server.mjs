// Test peer: oauth2-mock-server (pinned in package.json) minting RS256 JWTs with chosen claims.
// Usage: node server.mjs            Prints exactly one line "READY <port>" once listening.
//
// The issuer is http://127.0.0.1:PORT (set here: the CLI would say localhost). Tokens come from
// the real token endpoint: POST /token grant_type=client_credentials&claims=<JSON object>;
// the JSON is merged into the payload by the beforeTokenSigning hook (null deletes a claim).
// POST /__rotate adds a new signing key and answers {"kid": ...}; tokens then rotate keys
// round-robin, so a test can wait for one signed by the new kid.
import { createServer } from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const issuer = new OAuth2Issuer();
await issuer.keys.generate('RS256');
const service = new OAuth2Service(issuer);

service.on('beforeTokenSigning', (token, req) => {
  const raw = req.body?.claims;
  if (!raw) return;
  const claims = JSON.parse(raw);
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) delete token.payload[name];
    else token.payload[name] = value;
  }
});

const handler = service.requestHandler;
const server = createServer(async (req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    const key = await issuer.keys.generate('RS256');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: key.kid }));
    return;
  }
  handler(req, res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
issuer.url = `http://127.0.0.1:${port}`;
console.log(`READY ${port}`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

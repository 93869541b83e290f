// A real OpenID Connect provider (npm `oidc-provider`) for FC's sign-in tests.
//
//   node provider.mjs config.json
//
// config.json: {"port": 9123, "issuer": "http://127.0.0.1:9123",
//   "client": {"client_id": …, "client_secret": …, "redirect_uris": [...]},
//   "accounts": {"<sub>": {"email": …, "groups": [...], …}}}
//
// It signs ID tokens with an RSA key made at start (RS256, published at /jwks), uses the
// library's own login and consent pages (devInteractions: the login name is the account's
// sub), knows only the configured accounts, and prints "ready <issuer>" once listening.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(config.issuer, {
  clients: [{
    ...config.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    const claims = config.accounts[sub];
    if (!claims) return undefined;
    return { accountId: sub, async claims() { return { ...claims, sub }; } };
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));
const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`ready ${config.issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

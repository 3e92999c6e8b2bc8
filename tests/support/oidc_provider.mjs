// A real OpenID Connect provider for the tests: oidc-provider (npm) with its own dev login
// pages, one confidential client and the users given in a JSON file.
//   node oidc_provider.mjs <port> <setup.json>
// setup.json: {client_id, client_secret, redirect_uris, access_token_ttl, users: {id: claims}}
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, setupPath] = process.argv.slice(2);
const setup = JSON.parse(readFileSync(setupPath, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: setup.client_id,
      client_secret: setup.client_secret,
      redirect_uris: setup.redirect_uris,
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  async findAccount(ctx, id) {
    const claims = setup.users[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  claims: {
    openid: ["sub"],
    profile: ["preferred_username", "name"],
    email: ["email"],
    groups: ["groups"],
    lab: ["uidNumber", "gidNumber"],
  },
  scopes: ["openid", "offline_access", "profile", "email", "groups", "lab"],
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  clockTolerance: 0,
  ttl: {
    AccessToken: setup.access_token_ttl,
    AuthorizationCode: 60,
    IdToken: setup.access_token_ttl,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed("refresh_token");
  },
  async loadExistingGrant(ctx) {
    // Consent is given at once for every scope asked: the tests sign in, not consent.
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope);
    await grant.save();
    return grant;
  },
});
// Errors go to the log the tests show when something fails.
for (const event of ["server_error", "authorization.error", "grant.error", "userinfo.error"]) {
  provider.on(event, (ctx, error) => console.error(`${event}: ${error.stack || error}`));
}
provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

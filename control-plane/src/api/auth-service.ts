import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { AuthService } from '@cronium/proto/api/v1/user';
import { verifyDecoy, verifyPassword } from '../auth/passwords.ts';
import { endSessions, startSession } from '../auth/sessions.ts';
import { normalEmail, userByEmail } from '../auth/users.ts';
import { roles, userToProto } from '../wire/user-messages.ts';
import { originKey, principalOf, thenForgetCredentials } from './auth.ts';
import { audited, auditRefusal } from './changes.ts';
import { tooManyRequests } from './errors.ts';
import { findUser } from './user-service.ts';
import type { ApiDeps } from './deps.ts';

const REFUSED = 'wrong email or password';

export function authService(deps: ApiDeps): ServiceImpl<typeof AuthService> {
  const { db, access } = deps;

  /** Only failures count, per email and per address; while locked, even the right password waits. */
  const checkLimits = (email: string, ctx: HandlerContext) => {
    const address = ctx.values.get(originKey).remoteAddress;
    const wait = Math.max(access.signInByEmail.waitMs(email), access.signInByAddress.waitMs(address));
    if (wait > 0) throw tooManyRequests('failed sign-ins', wait);
    return {
      failed() {
        access.signInByEmail.failed(email);
        access.signInByAddress.failed(address);
      },
      succeeded: () => access.signInByEmail.succeeded(email),
    };
  };

  return {
    async signIn(req, ctx) {
      const email = normalEmail(req.email).slice(0, 254);
      const attempt = checkLimits(email, ctx);
      const user = email ? await userByEmail(db, email) : undefined;
      // The same work and the same answer whether the email is unknown or the password wrong.
      const valid = user && !user.disabled ? await verifyPassword(req.password, user.password_hash) : await verifyDecoy(req.password);
      if (!user || !valid) {
        attempt.failed();
        await auditRefusal(db, ctx, email, 'unauthenticated', user?.id);
        throw new ConnectError(REFUSED, Code.Unauthenticated);
      }
      attempt.succeeded();
      let sessionId = '';
      return audited(
        db,
        ctx,
        async (tx) => {
          const session = await startSession(tx, access.sessionKey, user.id, access.sessionHours);
          sessionId = session.id;
          return { sessionToken: session.token, expiresAt: timestampFromDate(session.expiresAt), user: userToProto(user) };
        },
        { id: () => sessionId, actor: () => ({ userId: user.id, credentialId: sessionId }) },
      );
    },
    async signOut(_req, ctx) {
      const principal = principalOf(ctx.values);
      if (principal.credential !== 'session') throw new ConnectError('this call was made with an API token, not a session: revoke tokens with TokenService/RevokeToken', Code.FailedPrecondition);
      return thenForgetCredentials(
        audited(
          db,
          ctx,
          async (tx) => {
            await endSessions(tx, { sessionId: principal.credentialId });
            return {};
          },
          { id: () => principal.credentialId },
        ),
      );
    },
    async whoAmI(_req, ctx) {
      const principal = principalOf(ctx.values);
      const user = await findUser(db, principal.ownerId).catch(() => undefined);
      return {
        user: user ? userToProto(user) : { id: principal.ownerId },
        role: roles[principal.role],
        credential: principal.credential,
        credentialId: principal.credentialId,
      };
    },
  };
}

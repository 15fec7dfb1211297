// How the campaign's AWS readers (the state reader, the gate) tell a credentials problem from any other error:
// one list, so `pulumi up` and the gate name the credentials for the same answers.

export interface AwsError {
    name?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
}

/** Error names AWS gives when the caller's credentials, not the request, are the problem. */
const CREDENTIAL_ERRORS = new Set([
    "AccessDenied",
    "AccessDeniedException",
    "Forbidden",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "TokenRefreshRequired",
    "UnrecognizedClientException",
    "AuthFailure",
    "CredentialsProviderError",
]);

export function isCredentialError(err: unknown): boolean {
    const e = err as AwsError;
    const status = e?.$metadata?.httpStatusCode;
    return CREDENTIAL_ERRORS.has(e?.name ?? "") || CREDENTIAL_ERRORS.has(e?.Code ?? "") || status === 403 || status === 401;
}

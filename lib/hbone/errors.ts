/** Why a tunnel could not be opened; `code` is stable for metrics and response flags. */
export type HboneErrorCode = 'ConnectFailed' | 'TlsFailed' | 'IdentityMismatch' | 'Denied' | 'UpstreamUnavailable' | 'Timeout' | 'Protocol';

export class HboneError extends Error {
  constructor(readonly code: HboneErrorCode, message: string, readonly status?: number) {
    super(message);
    this.name = 'HboneError';
  }
}

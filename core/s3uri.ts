/**
 * `s3://bucket/prefix` URIs of artifact stores, checked without I/O (the config schema and
 * the S3 store both use this). A URI never carries credentials: those come from the AWS
 * provider chain on the worker.
 */
export interface S3Location {
  bucket: string;
  /** key prefix without leading or trailing '/', '' for the bucket's root */
  prefix: string;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function isS3Uri(s: string): boolean {
  return s.startsWith('s3://');
}

/** Parses `s3://bucket/prefix`; throws with the reason (and never echoes a credential). */
export function parseS3Uri(uri: string): S3Location {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/s.exec(uri);
  if (!m) throw new Error('is not an s3://bucket/prefix URI');
  const bucket = m[1]!;
  if (bucket.includes('@') || bucket.includes(':')) {
    throw new Error(
      'must not carry credentials or a port (credentials come from the AWS provider chain: environment, profile, role; the endpoint from store.s3.endpoint or AWS_ENDPOINT_URL_S3)',
    );
  }
  if (!BUCKET.test(bucket) || bucket.includes('..'))
    throw new Error(`names an invalid bucket "${bucket}" (3-63 characters: lowercase letters, digits, ".", "-")`);
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix) {
    for (const s of prefix.split('/')) {
      if (s === '' || s === '.' || s === '..') throw new Error(`has an empty, "." or ".." segment in its prefix "${prefix}"`);
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f\\]/.test(s)) throw new Error('has a control character or backslash in its prefix');
    }
  }
  return { bucket, prefix };
}

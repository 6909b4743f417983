/** Defaults the command declarations (cli/srlm.ts) show in --help and the commands use; free of heavy imports. */

/** The store `srlm run --local-s3` uses when no --store is given. */
export const LOCAL_S3_STORE = 's3://srlm-local/artifacts';

/**
 * One name per source for everything recovery keeps about it (circuit breakers, source health,
 * the bandit): the connector's printable form, without credentials (user:password in a URL,
 * token query parameters masked), so a key is safe in the store, in logs and in documents, and
 * the same source written two ways (`data/x.csv`, `./data/x.csv`) is one key.
 */
import { parseSourceUrl, safeUrl } from "../../connectors/index.js";

export function sourceKey(source: string): string {
  try {
    return parseSourceUrl(source).display;
  } catch {
    return safeUrl(source.trim());
  }
}

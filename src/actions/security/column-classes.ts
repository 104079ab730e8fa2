/**
 * The classes the secure-API classifier gives a column, apart from the classifier itself so that
 * the policy's schema (read by the action catalogue at start-up) does not load the detectors and
 * their phone-number metadata.
 */
/** The classes a column can get. Detector kinds are identifier classes ("is PII"). */
export const COLUMN_CLASSES = [
  "card_number",
  "iban",
  "aba_routing",
  "ssn",
  "email",
  "phone",
  "ip_address",
  "date_of_birth",
  "person_name",
  "free_text_with_pii",
  "mixed_pii",
  "none",
] as const;
export type ColumnClass = (typeof COLUMN_CLASSES)[number];

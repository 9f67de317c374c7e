/** A statement prepared once per connection (by name), then only bound and executed. */
export interface Statement {
  name: string;
  text: string;
}

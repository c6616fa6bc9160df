/** A setting rotor refuses: thrown at start, before a socket is opened, with every problem found. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

import t from 'tap';
import { MemoryStore } from '../../src/store/memory.ts';
import { storeSuite } from './suite.ts';

storeSuite(t, 'memory', { open: async () => new MemoryStore() });

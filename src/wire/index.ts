/** rotor's frame codec: transport-free, shared by every carrier. */
export { FrameParser, type ParseResult } from './parser.ts';
export { serializeFrame, frameSize, FrameLimitError } from './serialize.ts';
export { getHeader, PROTOCOL_VERSION, BIN_LENGTH, type Frame, type RequestFrame, type ResponseFrame, type Header } from './frame.ts';
export { errorReply, Reply } from './reply.ts';
export { parseOneFrame, TRUSTED_LIMITS } from './one-frame.ts';

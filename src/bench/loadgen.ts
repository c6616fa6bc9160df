/**
 * The load generator: C connections, P lanes each, every lane one session with exactly one
 * request in flight (the next request needs this reply's token). Answers come back in request
 * order on a connection, so a FIFO of lanes per connection pairs them up; everything a burst
 * of answers makes a connection send goes out in one write. No promise per request: a
 * request costs two string concatenations, a FIFO push and a histogram record.
 */
import { performance } from 'node:perf_hooks';
import type { ResponseFrame } from '../wire/index.ts';
import type { Carrier, CarrierTarget, FramePipe } from './carriers.ts';
import { LatencyRecorder } from './histogram.ts';
import { header, loginRequest, newLane, type Credentials, type Lane, type ScenarioDriver } from './scenarios.ts';

export interface DriveOptions {
  connections: number;
  pipeline: number;
  warmupMs: number;
  durationMs: number;
  count: number | undefined;
  timeoutMs: number;
  credentials: Credentials;
  /** Called once a second with what happened in that second. */
  onTick?: (tick: Tick) => void;
  /** The server's CPU time so far (µs), when it can be asked. */
  serverCpuMicros?: () => Promise<number>;
}

export interface Tick {
  phase: 'setup' | 'warmup' | 'measure' | 'drain';
  elapsedMs: number;
  /** Responses in the last second. */
  rate: number;
  p99Us: number;
  errors: number;
}

export interface DriveResult {
  setupMs: number;
  durationMs: number;
  ok: number;
  requests: number;
  errors: Record<string, number>;
  extra: Record<string, number>;
  latency: LatencyRecorder;
  loadCpu: number;
  serverCpu: number | null;
}

interface Conn {
  pipe: FramePipe | undefined;
  lanes: Lane[];
  /** Lanes whose request is in flight, in send order. */
  flying: Lane[];
  head: number;
  closed: boolean;
}

/** Logins at once per connection while setting up (stays far below the server's login queue). */
const SETUP_LOGINS_PER_CONNECTION = 2;
const RATE_LIMIT_RETRY_MS = 50;

export async function drive(carrier: Carrier, target: CarrierTarget, driver: ScenarioDriver, options: DriveOptions): Promise<DriveResult> {
  const { connections, pipeline, credentials } = options;
  const latency = new LatencyRecorder();
  const errors: Record<string, number> = {};
  const extra: Record<string, number> = {};
  const loginText = loginRequest(credentials);
  const startedAt = performance.now();

  let phase: Tick['phase'] = 'setup';
  let setupMs = 0;
  let measureStart = Infinity;
  let measureEnd = Infinity;
  let lastRecordedAt = 0;
  let ok = 0;
  let measured = 0;
  let issuedMeasured = 0;
  let tickResponses = 0;
  let setupFailure: Error | undefined;
  let finish: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const conns: Conn[] = [];

  const countError = (code: string, n = 1) => {
    errors[code] = (errors[code] ?? 0) + n;
  };
  const inFlight = (conn: Conn) => conn.flying.length - conn.head;
  const allIdle = () => conns.every((c) => c.closed || inFlight(c) === 0);
  const stopping = () => phase === 'drain';
  const checkDone = () => {
    if (stopping() && allIdle()) finish?.();
  };

  const push = (conn: Conn, lane: Lane, out: string[]) => {
    if (lane.token === undefined && driver.needsSession) {
      lane.sending = 'login';
      out.push(driver.login ? driver.login(lane) : loginText);
    } else {
      lane.sending = 'op';
      out.push(driver.next(lane));
      lane.n++;
    }
    if (conn.head > 1024 && conn.head * 2 > conn.flying.length) {
      conn.flying = conn.flying.slice(conn.head);
      conn.head = 0;
    }
    conn.flying.push(lane);
  };
  const sendAll = (conn: Conn, lanes: Lane[], out: string[]) => {
    if (out.length === 0 || conn.closed) return;
    const now = performance.now();
    for (const lane of lanes) lane.sentAt = now;
    if (now >= measureStart) issuedMeasured += lanes.length;
    conn.pipe!.send(out);
  };
  const mayContinue = (now: number) => {
    if (phase === 'drain') return false;
    if (now >= measureEnd || (options.count !== undefined && issuedMeasured >= options.count)) {
      endMeasurement(now);
      return false;
    }
    return true;
  };

  // ---- setup: log every lane in, a few at a time per connection --------------------------------
  let lanesReady = 0;
  const totalLanes = connections * pipeline;
  const setupNext = (conn: Conn, cursor: { next: number }) => {
    if (setupFailure || cursor.next >= conn.lanes.length) return;
    const lane = conn.lanes[cursor.next++];
    const out: string[] = [];
    push(conn, lane, out);
    sendAll(conn, [lane], out);
  };
  const onSetupReply = (conn: Conn, lane: Lane, frame: ResponseFrame, cursor: { next: number }) => {
    if (driver.loginStep) {
      const step = driver.loginStep(lane, frame);
      if (step === 'more') {
        const out: string[] = [];
        push(conn, lane, out);
        sendAll(conn, [lane], out);
        return;
      }
      if (step !== 'done') {
        setupFailure ??= new Error(`a login step failed: ${step}`);
        finish?.();
        return;
      }
      lanesReady++;
      if (lanesReady === totalLanes) startRun();
      else setupNext(conn, cursor);
      return;
    }
    const code = header(frame, 'Error');
    const token = header(frame, 'Token');
    if (code === 'ROTOR_E_RATE_LIMITED') {
      setTimeout(() => {
        if (conn.closed || setupFailure) return;
        const out: string[] = [];
        push(conn, lane, out);
        sendAll(conn, [lane], out);
      }, RATE_LIMIT_RETRY_MS);
      return;
    }
    if (code !== undefined || token === undefined) {
      setupFailure ??= new Error(`login as ${JSON.stringify(credentials.user)} failed: ${code ?? `status ${frame.status} without a token`}`);
      finish?.();
      return;
    }
    lane.token = token;
    lanesReady++;
    if (lanesReady === totalLanes) startRun();
    else setupNext(conn, cursor);
  };

  // ---- the run -----------------------------------------------------------------------------------
  let serverCpuStart: Promise<number> | undefined;
  let serverCpuEnd: Promise<number> | undefined;
  let loadCpuStart: NodeJS.CpuUsage | undefined;
  let loadCpuMicros = 0;
  let measureWall = 0;
  let timers: NodeJS.Timeout[] = [];

  const beginMeasurement = () => {
    if (phase !== 'warmup') return;
    phase = 'measure';
    latency.reset();
    for (const key of Object.keys(extra)) delete extra[key];
    loadCpuStart = process.cpuUsage();
    serverCpuStart = options.serverCpuMicros?.();
  };
  function endMeasurement(now: number) {
    if (phase === 'drain') return;
    if (phase === 'warmup') beginMeasurement();
    phase = 'drain';
    const usage = process.cpuUsage(loadCpuStart);
    loadCpuMicros = usage.user + usage.system;
    measureWall = Math.min(now, measureEnd) - measureStart;
    serverCpuEnd = options.serverCpuMicros?.();
    checkDone();
  }
  function startRun() {
    const now = performance.now();
    setupMs = now - startedAt;
    phase = 'warmup';
    measureStart = now + options.warmupMs;
    measureEnd = measureStart + options.durationMs;
    timers.push(setTimeout(beginMeasurement, options.warmupMs));
    // Lanes also stop by themselves when an answer arrives after the end; this covers a silent server.
    timers.push(setTimeout(() => endMeasurement(performance.now()), options.warmupMs + options.durationMs + 5));
    if (options.warmupMs === 0) beginMeasurement();
    for (const conn of conns) {
      const out: string[] = [];
      for (const lane of conn.lanes) push(conn, lane, out);
      sendAll(conn, conn.lanes, out);
    }
  }
  const onFrames = (conn: Conn, cursor: { next: number }, frames: ResponseFrame[]) => {
    const now = performance.now();
    const again: Lane[] = [];
    const out: string[] = [];
    for (const frame of frames) {
      if (conn.head >= conn.flying.length) {
        countError('UNASKED_REPLY');
        continue;
      }
      const lane = conn.flying[conn.head++];
      if (phase === 'setup') {
        onSetupReply(conn, lane, frame, cursor);
        continue;
      }
      tickResponses++;
      let code: string | undefined;
      if (lane.sending === 'login') {
        // A lane whose session ended logs in again; that login is not the scenario's work.
        if (driver.loginStep) driver.loginStep(lane, frame);
        else {
          const token = header(frame, 'Token');
          if (token !== undefined && header(frame, 'Error') === undefined) lane.token = token;
        }
      } else {
        code = driver.judge(lane, frame, extra);
        if (lane.sentAt >= measureStart && phase !== 'warmup') {
          measured++;
          lastRecordedAt = now;
          latency.record((now - lane.sentAt) * 1000);
          if (code === undefined) ok++;
          else countError(code);
        }
      }
      if (mayContinue(now)) {
        push(conn, lane, out);
        again.push(lane);
      }
    }
    sendAll(conn, again, out);
    checkDone();
  };

  // ---- connections -------------------------------------------------------------------------------
  for (let c = 0; c < connections; c++) {
    const conn: Conn = { pipe: undefined, lanes: [], flying: [], head: 0, closed: false };
    for (let p = 0; p < pipeline; p++) conn.lanes.push(newLane(c * pipeline + p));
    conns.push(conn);
  }
  const cursors = conns.map(() => ({ next: 0 }));
  try {
    await Promise.all(
      conns.map(async (conn, c) => {
        conn.pipe = await carrier(target, {
          frames: (frames) => onFrames(conn, cursors[c], frames),
          closed: (reason) => {
            if (conn.closed) return;
            conn.closed = true;
            const lost = inFlight(conn);
            conn.head = conn.flying.length;
            if (phase === 'setup') {
              setupFailure ??= new Error(`connection closed during setup${reason ? `: ${reason}` : ''}`);
              finish?.();
              return;
            }
            if (lost > 0) countError('CLOSED', lost);
            if (conns.every((x) => x.closed)) endMeasurement(performance.now());
            checkDone();
          },
        });
      }),
    );
  } catch (err) {
    for (const conn of conns) conn.pipe?.close();
    throw new Error(`cannot connect to ${target.host}:${target.port}: ${(err as Error).message}`);
  }

  // A lane that waits longer than the timeout ends the run: its connection is dropped.
  let lastTick = performance.now();
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (const conn of conns) {
      if (conn.closed || inFlight(conn) === 0) continue;
      if (now - conn.flying[conn.head].sentAt > options.timeoutMs) {
        countError('TIMEOUT', inFlight(conn));
        conn.head = conn.flying.length;
        conn.closed = true;
        conn.pipe!.close();
        if (phase === 'setup') {
          setupFailure ??= new Error(`no answer to a login within ${options.timeoutMs} ms`);
          finish?.();
        }
      }
    }
    if (phase !== 'setup' && conns.every((c) => c.closed)) endMeasurement(now);
    checkDone();
    if (now - lastTick >= 1000) {
      const seconds = (now - lastTick) / 1000;
      lastTick = now;
      options.onTick?.({
        phase,
        elapsedMs: now - startedAt,
        rate: tickResponses / seconds,
        p99Us: latency.count > 0 ? latency.percentile(99) : 0,
        errors: Object.values(errors).reduce((a, b) => a + b, 0),
      });
      tickResponses = 0;
    }
  }, 100);

  if (driver.needsSession) {
    conns.forEach((conn, c) => {
      for (let i = 0; i < SETUP_LOGINS_PER_CONNECTION; i++) setupNext(conn, cursors[c]);
    });
  } else {
    startRun();
  }

  try {
    await finished;
  } finally {
    clearInterval(watchdog);
    for (const timer of timers) clearTimeout(timer);
    timers = [];
    for (const conn of conns) conn.pipe?.close();
  }
  if (setupFailure) throw setupFailure;

  const [cpuStart, cpuEnd] = await Promise.all([serverCpuStart, serverCpuEnd]).catch(() => [undefined, undefined]);
  const durationMs = options.count !== undefined && lastRecordedAt > 0 && lastRecordedAt < measureEnd ? lastRecordedAt - measureStart : measureWall;
  return {
    setupMs,
    durationMs,
    ok,
    requests: measured,
    errors,
    extra,
    latency,
    loadCpu: measureWall > 0 ? loadCpuMicros / 1000 / measureWall : 0,
    serverCpu: cpuStart !== undefined && cpuEnd !== undefined && measureWall > 0 ? (cpuEnd - cpuStart) / 1000 / measureWall : null,
  };
}

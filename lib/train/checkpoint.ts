/**
 * fit()'s checkpoints: everything a run needs to continue exactly where it stopped (the model,
 * the optimizer and scheduler, the position in the epoch's order, the generators, the carried
 * recurrent state, early-stopping counters), written at a step or an epoch's end and read back
 * by resumeFrom. Data-parallel runs gather every rank's state to rank 0, which writes the file;
 * every rank reads rank 0's bytes, on the same world size or another.
 */
import * as fs from 'node:fs';
import type { Plan } from './batching';
import { agree, allReduce, allReduceNumbers, broadcastBytes } from '../distributed/distributed';
import type { History } from './options';
import type { State } from './step';
import type { Module } from '../nn/module';
import type { LRScheduler, Optimizer } from '../optim/optimizers';
import { Generator, RngState } from '../core/random';
import { parseSafetensors } from '../io/safetensors';
import { checkpointFromContent, describeModel, loadCheckpoint, saveCheckpoint, CheckpointContent } from '../io/serialize';
import { Tensor } from '../core/tensor';

export interface Position {
  epoch: number;
  batch: number;
  step: number;
  order: number[][] | null;
  /** the shared generator's state when this epoch's order was drawn (re-derives it on resume) */
  epochRng?: RngState;
}

/** What changes as a run goes: all of it goes into a checkpoint. */
export interface RunState {
  position: Position;
  history: History;
  carried: State | null;
  best: number;
  badEpochs: number;
  epochLossSum: number;
  epochWeight: number;
}

/** The run's fixed parts that a checkpoint saves or restores. */
export interface RunParts {
  model: Module;
  optimizer: Optimizer;
  scheduler: LRScheduler | undefined;
  /** the shared generator (shuffling; dropout too on one process) */
  rng: Generator;
  /** this rank's dropout generator (rng itself on one process) */
  stepRng: Generator;
  world: { rank: number; worldSize: number } | null;
}

interface SavedState {
  position: Position;
  history: History;
  rng: RngState;
  optimizer: { type: string; hyper: Record<string, number | boolean>; steps: number[] };
  scheduler?: { lastEpoch: number };
  best: number | null;
  badEpochs: number;
  epochLossSum: number;
  epochWeight: number;
  distributed?: { worldSize: number; stepRngs: RngState[] };
}

/**
 * Restores `run` and the parts from the checkpoint at `path`. Exact on the same world size; on
 * another, this epoch's order is re-derived from the saved draw, the samples already seen are
 * skipped and the carried state restarts.
 */
export async function resumeRun(path: string, run: RunState, parts: RunParts, plan: Plan, shuffle: boolean): Promise<void> {
  const { model, optimizer, scheduler, rng, stepRng, world } = parts;
  const rank = world?.rank ?? 0;
  const worldSize = world?.worldSize ?? 1;
  const saved = world ? await loadCheckpointShared(path, rank === 0) : await loadCheckpoint(path);
  const s = saved.state as unknown as SavedState;
  model.loadStateDict(saved.model);
  optimizer.loadStateDict({ ...s.optimizer, buffers: saved.optimizerBuffers });
  if (scheduler && s.scheduler) scheduler.loadStateDict(s.scheduler);
  run.position = s.position;
  Object.assign(run.history, s.history, { stopReason: 'completed' });
  run.best = s.best ?? Infinity;
  run.badEpochs = s.badEpochs;
  run.epochLossSum = s.epochLossSum;
  run.epochWeight = s.epochWeight;
  let carried: State | null = saved.tensors.h ? { h: saved.tensors.h, ...(saved.tensors.c ? { c: saved.tensors.c } : {}) } : null;
  rng.setState(s.rng);
  const savedWorld = s.distributed?.worldSize ?? 1;
  if (s.distributed) {
    // written by a data-parallel run: states and dropout generators of every rank
    carried = savedWorld === worldSize && carried ? { h: rankSlice(carried.h, rank), ...(carried.c ? { c: rankSlice(carried.c, rank) } : {}) } : null;
    if (savedWorld === worldSize && s.distributed.stepRngs[rank]) stepRng.setState(s.distributed.stepRngs[rank]);
  }
  const position = run.position;
  if (position.batch > 0 && (position.order === null || savedWorld !== worldSize)) {
    // this epoch's order again, from the same draw, cut for this rank (data-parallel
    // checkpoints keep only the draw); on another world size the batches already trained
    // are skipped (as many samples) and the carried state restarts
    if (position.epochRng) {
      const draw = new Generator();
      draw.setState(position.epochRng);
      position.order = draw.run(() => plan.order(shuffle));
      if (savedWorld !== worldSize) position.batch = Math.min(plan.batchesPerEpoch, Math.round((position.batch * savedWorld) / worldSize));
    } else if (savedWorld !== worldSize) {
      run.position = { ...position, epoch: position.epoch + 1, batch: 0, order: null };
    }
  }
  run.carried = savedWorld !== worldSize ? null : carried;
}

/** Writes the checkpoint of `run` at `position` (default: where the run is) to `target.path`, with `target.metadata`. */
export async function writeCheckpoint(target: { path: string; metadata?: Record<string, string> }, run: RunState, parts: RunParts, position = run.position): Promise<void> {
  const { world, stepRng } = parts;
  if (world) {
    // every rank's carried state and dropout generator go to rank 0, which writes the file;
    // a failure there is thrown on every rank
    const { rank, worldSize } = world;
    const states = gatherState(run.carried, rank, worldSize);
    const rngs = gatherRng(stepRng.getState(), rank, worldSize);
    await agree(() => (rank === 0 ? writeFile(target, run, parts, position, states, { worldSize, stepRngs: rngs }) : undefined));
    return;
  }
  await writeFile(target, run, parts, position, run.carried, undefined);
}

async function writeFile(target: { path: string; metadata?: Record<string, string> }, run: RunState, parts: RunParts, position: Position, states: State | null,
  distributed: { worldSize: number; stepRngs: RngState[] } | undefined): Promise<void> {
  const { model, optimizer, scheduler, rng } = parts;
  const optState = optimizer.stateDict();
  let modelSpec = null;
  try {
    modelSpec = describeModel(model);
  } catch {
    modelSpec = null; // custom modules without config() still checkpoint their weights
  }
  const state: SavedState = {
    position: distributed ? { ...position, order: null } : position, history: run.history, rng: rng.getState(),
    optimizer: { type: optState.type, hyper: optState.hyper, steps: optState.steps },
    scheduler: scheduler?.stateDict(), best: Number.isFinite(run.best) ? run.best : null, badEpochs: run.badEpochs,
    epochLossSum: run.epochLossSum, epochWeight: run.epochWeight,
    ...(distributed ? { distributed } : {}),
  };
  await saveCheckpoint(target.path, {
    metadata: target.metadata,
    model: model.stateDict(),
    modelSpec,
    optimizerBuffers: optState.buffers,
    tensors: states ? { h: states.h, ...(states.c ? { c: states.c } : {}) } : {},
    state: state as unknown as Record<string, unknown>,
  });
}

// ---------------------------------------------------------------------------
// Data-parallel helpers

/** Rank 0 reads the checkpoint; every rank parses the same bytes. */
async function loadCheckpointShared(path: string, lead: boolean): Promise<CheckpointContent> {
  const { result } = await agree(async () => (lead ? new Uint8Array(await fs.promises.readFile(path)) : null));
  const bytes = broadcastBytes(result, 0);
  return checkpointFromContent(parseSafetensors(bytes, path), path);
}

/** Every rank's state stacked as [worldSize, ...] on every rank (a sum of disjoint slots). */
function gatherState(state: State | null, rank: number, worldSize: number): State | null {
  if (!state) return null;
  const stack = (t: Tensor): Tensor => {
    const all = Tensor.zeros([worldSize, ...t.shape]);
    all.storage.write(t.toArray(), rank * t.size);
    return allReduce(all, 'sum');
  };
  return { h: stack(state.h), ...(state.c ? { c: stack(state.c) } : {}) };
}

function gatherRng(state: RngState, rank: number, worldSize: number): RngState[] {
  const slots = new Array<number>(2 * worldSize).fill(0);
  slots[2 * rank] = state.counter;
  slots[2 * rank + 1] = state.high;
  const all = allReduceNumbers(slots);
  return [...Array(worldSize).keys()].map((r) => ({ counter: all[2 * r], high: all[2 * r + 1] }));
}

/** Rank `rank`'s slice of a state stacked by gatherState. */
function rankSlice(t: Tensor, rank: number): Tensor {
  const shape = t.shape.slice(1);
  const size = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(t.toArray().slice(rank * size, (rank + 1) * size), shape);
}

/**
 * Data-parallel training on MPI: collectives across 2 and 4 processes on this machine
 * (`recurrent launch`, which wraps Open MPI's mpirun), fit({ distributed: true }) against one
 * process training on the same global batches, DistributedDataParallel in a loop of one's own,
 * a rank that fails, checkpoints resumed on another world size, and the package without MPI.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { backends, DistributedDataParallel, allReduce, barrier, broadcast, fit, getRank, getWorldSize, initDistributed, manualSeed, Tensor } from '../lib';
import { ddpData, ddpModel, DDP_OPTIONS } from './fixtures/distributed-setup';

const ROOT = path.join(__dirname, '..');
const WORKER = path.join(__dirname, 'fixtures', 'distributed-worker.ts');
const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
const haveMpirun = mpirun.status === 0;

interface Launched {
  code: number | null;
  output: string;
}

/** `recurrent launch -n N` of the worker, bounded in time (the whole job is killed past it). */
function launch(n: number, args: string[], timeoutMs = 90_000, launchFlags: string[] = [], prefix: string[] = []): Promise<Launched> {
  return new Promise((resolve, reject) => {
    const cli = "require('./lib/apps/cli').main([process.argv[0], 'recurrent', ...process.argv.slice(1)]).catch((e) => { console.error(e.message); process.exitCode = 1; })";
    const command = [...prefix, process.execPath, '--require', 'tsx/cjs', '-e', cli, '--',
      'launch', '-n', String(n), ...launchFlags, '--require', 'tsx/cjs', WORKER, ...args];
    const child = spawn(command[0], command.slice(1), { cwd: ROOT, env: process.env, detached: true });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      reject(new Error(`launch -n ${n} ${args.join(' ')} did not end within ${timeoutMs / 1000} s (a hang)\n${output}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function results<T>(dir: string, scenario: string, n: number): T[] {
  return [...Array(n).keys()].map((r) => JSON.parse(fs.readFileSync(path.join(dir, `${scenario}-rank${r}.json`), 'utf8')) as T);
}

function maxDifference(a: Record<string, number[]>, b: Record<string, number[]>): number {
  let worst = 0;
  for (const name of Object.keys(b)) {
    expect(a[name], name).to.have.length(b[name].length);
    a[name].forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[name][i]))));
  }
  return worst;
}

describe('data-parallel training (MPI)', function () {
  this.timeout(240_000);
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-ddp-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('in one process (a world of one, no launcher)', () => {
    it('backends().distributed says what is available', () => {
      const d = backends().distributed;
      expect(d.available).to.be.a('boolean');
      if (d.available) expect(d.engine).to.match(/Open MPI/);
      else expect(d.reason).to.be.a('string').and.match(/MPI/);
    });

    it('initDistributed() is rank 0 of 1, and the collectives are the identity', () => {
      expect(initDistributed()).to.deep.include({ rank: 0, worldSize: 1 });
      expect([getRank(), getWorldSize()]).to.deep.equal([0, 1]);
      const t = Tensor.from([1, 2, 3], [3]);
      expect(Array.from(allReduce(t, 'mean').toArray())).to.deep.equal([1, 2, 3]);
      expect(Array.from(broadcast(t, 0).toArray())).to.deep.equal([1, 2, 3]);
      barrier();
      expect(() => allReduce(t, 'prod' as 'sum')).to.throw(TypeError, /'sum', 'mean', 'max' or 'min'/);
      expect(() => allReduce([t, 5 as unknown as Tensor])).to.throw(TypeError, /tensors\[1\] to be a Tensor/);
      expect(() => broadcast(t, 1)).to.throw(RangeError, /root/);
    });

    it('fit({ distributed: true }) in a world of one trains exactly as fit alone', async () => {
      manualSeed(3);
      const a = ddpModel();
      manualSeed(3);
      const b = ddpModel();
      const ha = await fit(a, ddpData('fit'), DDP_OPTIONS.fit);
      const hb = await fit(b, ddpData('fit'), { ...DDP_OPTIONS.fit, distributed: true });
      expect(hb.batchLoss).to.deep.equal(ha.batchLoss);
      const pa = a.parameters().map((p) => Array.from(p.toArray()));
      expect(b.parameters().map((p) => Array.from(p.toArray()))).to.deep.equal(pa);
    });

    it('DistributedDataParallel in a world of one leaves gradients as they are', () => {
      manualSeed(4);
      const model = ddpModel();
      const ddp = new DistributedDataParallel(model);
      expect(ddp.namedParameters()[0][0]).to.equal('module.rnn.weight_ih_l0');
      const x = Tensor.randn([4, 2, 3]);
      (ddp.forward(x) as { output: Tensor }).output.square().mean().backward();
      const g = model.parameters().map((p) => Array.from(p.grad!.toArray()));
      ddp.dispose();
      model.zeroGrad();
      model.forward(x).output.square().mean().backward();
      expect(model.parameters().map((p) => Array.from(p.grad!.toArray()))).to.deep.equal(g);
    });
  });

  describe('without MPI installed', () => {
    it('the package loads and trains, backends().distributed explains, and a launched process gets the reason', () => {
      const script = `
        const r = require('./lib');
        const d = r.backends().distributed;
        const world = r.initDistributed();
        const m = new r.SequenceModel({ inputSize: 2, hiddenSize: 4, outputSize: 1 });
        r.fit(m, { inputs: r.Tensor.randn([8, 3, 2]), targets: r.Tensor.randn([8, 3, 1]) }, { epochs: 1, batchSize: 4, distributed: true }).then((h) => {
          let launched = null;
          process.env.OMPI_COMM_WORLD_SIZE = '2';
          console.log(JSON.stringify({ d, world, steps: h.steps }));
        });`;
      const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
        cwd: ROOT, encoding: 'utf8', env: { ...process.env, RECURRENT_MPI_LIBRARY: '/nonexistent/libmpi.so.40' }, timeout: 60_000,
      });
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(out.d.available).to.equal(false);
      expect(out.d.reason).to.match(/no MPI library could be loaded.*nonexistent.*apt-get install openmpi-bin/);
      expect(out.world).to.deep.include({ rank: 0, worldSize: 1 });
      expect(out.steps).to.equal(2);
      // as if started by mpirun, but libmpi is missing: a clear error, not a crash
      const launched = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', "try { require('./lib').initDistributed() } catch (e) { console.log(e.code + ': ' + e.message) }"], {
        cwd: ROOT, encoding: 'utf8', env: { ...process.env, RECURRENT_MPI_LIBRARY: '/nonexistent/libmpi.so.40', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '1' }, timeout: 60_000,
      });
      expect(launched.status, launched.stderr).to.equal(0);
      expect(launched.stdout).to.match(/^ERR_DISTRIBUTED: this process was started by an MPI launcher, but no MPI library could be loaded/);
    });
  });

  describe('across processes on this machine', function () {
    before(function () {
      if (!haveMpirun) {
        console.log('      (mpirun is not installed: apt-get install openmpi-bin libopenmpi-dev; .ci/run installs it)');
        this.skip();
      }
    });

    it('4 ranks: all-reduce (sum, mean, max, min) of odd sizes, several tensors, none, and 10M elements; broadcast; barrier', async () => {
      const run = await launch(4, ['collectives', dir]);
      expect(run.code, run.output).to.equal(0);
      for (const r of results<Record<string, unknown>>(dir, 'collectives', 4)) {
        expect(r).to.deep.include({ worldSize: 4, okSum: true, okMean: true, okMax: true, okMin: true, okBig: true, okBroadcast: true });
        expect(r.json).to.deep.equal({ hello: 'from rank 0', n: [1, 2, 3] });
        expect((r.distributed as { engine: string }).engine).to.match(/Open MPI/);
      }
    });

    it('plain mpirun works as well as recurrent launch', () => {
      const root = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
      const r = spawnSync('mpirun', ['-n', '2', '--oversubscribe', ...root, process.execPath, '--require', 'tsx/cjs', WORKER, 'collectives', dir], {
        cwd: ROOT, encoding: 'utf8', timeout: 90_000,
      });
      expect(r.status, `${r.stdout}\n${r.stderr}`).to.equal(0);
      for (const result of results<Record<string, unknown>>(dir, 'collectives', 2)) {
        expect(result).to.deep.include({ worldSize: 2, okSum: true, okMean: true, okBig: true, okBroadcast: true });
      }
    });

    for (const n of [2, 4]) {
      for (const scenario of ['fit', 'stream'] as const) {
        it(`${n} ranks, ${scenario === 'fit' ? 'shuffled samples' : 'one stream with truncated BPTT'}: identical parameters on every rank, equal to one process on the same global batches`, async () => {
          const run = await launch(n, [scenario, dir]);
          expect(run.code, run.output).to.equal(0);
          const ranks = results<{ params: Record<string, number[]>; history: { batchLoss: number[]; steps: number } }>(dir, scenario, n);
          for (const r of ranks.slice(1)) {
            expect(maxDifference(r.params, ranks[0].params), 'ranks differ').to.equal(0);
            expect(r.history.batchLoss).to.deep.equal(ranks[0].history.batchLoss);
          }
          // one process, rank 0's initial weights, batches worldSize times larger
          manualSeed(100);
          const model = ddpModel();
          const options = DDP_OPTIONS[scenario];
          const history = await fit(model, ddpData(scenario), { ...options, batchSize: options.batchSize! * n });
          expect(ranks[0].history.steps).to.equal(history.steps).and.to.be.greaterThan(3);
          const single = Object.fromEntries(model.namedParameters().map(([name, t]) => [name, Array.from(t.toArray())]));
          const initial = (manualSeed(100), Object.fromEntries(ddpModel().namedParameters().map(([name, t]) => [name, Array.from(t.toArray())])));
          expect(maxDifference(single, initial), 'training moved the weights').to.be.greaterThan(1e-3);
          expect(maxDifference(ranks[0].params, single)).to.be.below(1e-5);
          ranks[0].history.batchLoss.forEach((loss, i) => expect(loss).to.be.closeTo(history.batchLoss[i], 1e-5 * Math.max(1, Math.abs(loss))));
        });
      }
    }

    it('DistributedDataParallel: after backward every rank holds the mean of the ranks\' gradients, reduced in several buckets', async () => {
      const run = await launch(2, ['ddp-loop', dir]);
      expect(run.code, run.output).to.equal(0);
      const ranks = results<{ buckets: number; grads: Record<string, number[]>; local: Record<string, number[]> }>(dir, 'ddp-loop', 2);
      expect(ranks[0].buckets).to.be.greaterThan(2);
      const mean: Record<string, number[]> = {};
      for (const name of Object.keys(ranks[0].local)) mean[name] = ranks[0].local[name].map((v, i) => (v + ranks[1].local[name][i]) / 2);
      expect(maxDifference(ranks[0].local, ranks[1].local), 'each rank had its own gradient').to.be.greaterThan(1e-4);
      expect(maxDifference(ranks[0].grads, ranks[1].grads)).to.equal(0);
      expect(maxDifference(ranks[0].grads, mean)).to.be.below(1e-6);
    });

    it('a rank whose step throws: every rank leaves fit with that error, at once', async () => {
      const run = await launch(2, ['throws', dir], 60_000);
      expect(run.code, run.output).to.equal(0);
      const [r0, r1] = results<{ error: { message: string; code?: string; name: string } | null; calls: number }>(dir, 'throws', 2);
      expect(r1.error).to.deep.include({ name: 'RangeError', message: 'the loss of rank 1 exploded' });
      expect(r0.error).to.deep.include({ name: 'RangeError', code: 'ERR_DISTRIBUTED', message: 'rank 1 failed: the loss of rank 1 exploded' });
      // at once: rank 0 leaves in the step where rank 1 failed, not after more steps on its own
      expect([r0.calls, r1.calls]).to.deep.equal([3, 3]);
    });

    it('a rank that dies outside a step ends the whole job (no hang), with its error shown', async () => {
      const run = await launch(2, ['exits', dir], 60_000);
      expect(run.code).to.not.equal(0);
      expect(run.output).to.match(/rank 1 gives up/); // a hang would end in launch()'s time-out, a failure
    });

    it('checkpoints are written by rank 0; a resume on the same world size is exact, and on another world size it finishes the run', async () => {
      const straight = path.join(dir, 'straight.ckpt');
      const split = path.join(dir, 'split.ckpt');
      const other = path.join(dir, 'other.ckpt');
      for (const [n, file, epochs] of [[2, straight, 2], [2, split, 1], [2, split, 2], [2, other, 1], [4, other, 2]] as const) {
        const run = await launch(n, ['checkpoint', dir, file, String(epochs)]);
        expect(run.code, run.output).to.equal(0);
        const ranks = results<{ params: Record<string, number[]>; history: { epochs: number; loss: number[] } }>(dir, 'checkpoint', n);
        for (const r of ranks) {
          expect(r.history.epochs).to.equal(epochs);
          expect(maxDifference(r.params, ranks[0].params)).to.equal(0);
        }
        fs.copyFileSync(path.join(dir, 'checkpoint-rank0.json'), `${file}.${n}.${epochs}.json`);
      }
      const read = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as { params: Record<string, number[]>; history: { loss: number[] } };
      const a = read(`${straight}.2.2.json`);
      const b = read(`${split}.2.2.json`);
      expect(maxDifference(b.params, a.params)).to.equal(0);
      expect(b.history.loss).to.deep.equal(a.history.loss);
      const c = read(`${other}.4.2.json`);
      expect(c.history.loss).to.have.length(2);
      expect(c.history.loss[0]).to.equal(a.history.loss[0]); // the first epoch was the 2-rank run's
      expect(Number.isFinite(c.history.loss[1])).to.equal(true);
    });
  });
  describe('across two hosts', function () {
    // Two network namespaces joined by a veth pair stand for two machines: mpirun runs in the
    // first and starts the second rank's daemon in the other through an rsh agent (where ssh
    // would be), and MPI may only use TCP. Where namespaces cannot be made (no root or no
    // CAP_SYS_ADMIN), the same job runs over TCP on loopback.
    const id = String(process.pid % 100000);
    const ns = { a: `recurrentA${id}`, b: `recurrentB${id}`, va: `rva${id}`, vb: `rvb${id}` };
    let namespaces = false;
    const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });

    before(function () {
      if (!haveMpirun) this.skip();
      // RECURRENT_TEST_NO_NETNS=1 takes the loopback path on purpose
      const made = process.env.RECURRENT_TEST_NO_NETNS ? { status: 1, stderr: 'RECURRENT_TEST_NO_NETNS is set' } : sh([
        `ip netns add ${ns.a}`, `ip netns add ${ns.b}`, `ip link add ${ns.va} type veth peer name ${ns.vb}`,
        `ip link set ${ns.va} netns ${ns.a}`, `ip link set ${ns.vb} netns ${ns.b}`,
        `ip -n ${ns.a} addr add 10.231.0.1/24 dev ${ns.va}`, `ip -n ${ns.b} addr add 10.231.0.2/24 dev ${ns.vb}`,
        `ip -n ${ns.a} link set ${ns.va} up`, `ip -n ${ns.b} link set ${ns.vb} up`, `ip -n ${ns.a} link set lo up`, `ip -n ${ns.b} link set lo up`,
      ].join(' && '));
      namespaces = made.status === 0;
      if (!namespaces) {
        sh(`ip netns del ${ns.a} 2>/dev/null; ip netns del ${ns.b} 2>/dev/null`);
        console.log(`      (network namespaces unavailable: ${made.stderr.trim().split('\n')[0]}; the job runs over TCP on loopback)`);
      }
    });

    after(() => {
      if (namespaces) sh(`ip netns del ${ns.a}; ip netns del ${ns.b}`);
    });

    it('2 ranks on two hosts over TCP (a hostfile, an rsh agent): the same parameters as one process', async () => {
      let run: Launched;
      if (namespaces) {
        const hostfile = path.join(dir, 'hosts');
        fs.writeFileSync(hostfile, '10.231.0.1 slots=1\n10.231.0.2 slots=1\n');
        const agent = path.join(dir, 'agent.sh');
        fs.writeFileSync(agent, [
          '#!/bin/sh', '# what ssh would do: run the command on the host (here: in its network namespace)',
          'host="$1"; shift',
          `case "$host" in 10.231.0.1) ns=${ns.a} ;; 10.231.0.2) ns=${ns.b} ;; *) echo "unknown host $host" >&2; exit 1 ;; esac`,
          'exec ip netns exec "$ns" sh -c "$*"', '',
        ].join('\n'), { mode: 0o755 });
        run = await launch(2, ['fit', dir], 90_000, ['--hostfile', hostfile, '--mca', `plm_rsh_agent=${agent}`, '--mca', 'btl=tcp,self'], ['ip', 'netns', 'exec', ns.a]);
      } else {
        run = await launch(2, ['fit', dir], 90_000, ['--mca', 'btl=tcp,self', '--mca', 'btl_tcp_if_include=lo']);
      }
      expect(run.code, run.output).to.equal(0);
      const ranks = results<{ params: Record<string, number[]>; history: { steps: number } }>(dir, 'fit', 2);
      expect(maxDifference(ranks[1].params, ranks[0].params)).to.equal(0);
      manualSeed(100);
      const model = ddpModel();
      await fit(model, ddpData('fit'), { ...DDP_OPTIONS.fit, batchSize: DDP_OPTIONS.fit.batchSize! * 2 });
      const single = Object.fromEntries(model.namedParameters().map(([name, t]) => [name, Array.from(t.toArray())]));
      expect(maxDifference(ranks[0].params, single)).to.be.below(1e-5);
      if (namespaces) {
        // the gradients crossed the veth: at least one 4-byte value per parameter per step each way
        const sent = Number(sh(`ip netns exec ${ns.a} cat /sys/class/net/${ns.va}/statistics/tx_bytes`).stdout);
        const parameters = model.parameters().reduce((n, p) => n + p.size, 0);
        expect(sent).to.be.greaterThan(4 * parameters * ranks[0].history.steps);
      }
    });
  });
});

import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { backends } from '../lib/index';
import { BinaryOp, CellKind, OPTIMIZERS, UnaryOp, native } from '../lib/core/native';

describe('native addon', () => {
  it('loads through lib/core/native.ts and exposes the kernels', () => {
    for (const name of ['Storage', 'layerForward', 'layerBackward', 'gemm', 'referenceForward']) {
      expect(native).to.have.property(name).that.is.a('function');
    }
  });

  it('backends() reports the CPU, and CUDA as compiled-or-not with a reason when unusable', () => {
    const b = backends();
    expect(b.cpu.threads).to.be.at.least(1);
    expect(b.cpu.soloCalls).to.be.a('number').and.at.least(0);
    expect(b.cpu.isa).to.be.a('string');
    expect(b.cuda.compiled).to.be.a('boolean');
    expect(b.cuda.deviceCount).to.be.a('number');
    if (b.cuda.deviceCount === 0) expect(b.cuda.reason).to.be.a('string').and.not.be.empty;
  });

  it('on a machine without an NVIDIA driver, says that no CUDA driver or GPU was found (not "driver version is insufficient")', function () {
    const b = backends();
    if (!b.cuda.compiled) this.skip(); // the stand-ins say "not compiled in"
    const ldconfig = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
    const driverInstalled = ldconfig.status === 0 ? /libcuda\.so\.1\b/.test(ldconfig.stdout) : ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/lib64/libcuda.so.1'].some((f) => fs.existsSync(f));
    if (driverInstalled) {
      console.log('      (an NVIDIA driver is installed here: checked only that the reason, if any, is not the misleading one)');
      if (b.cuda.deviceCount === 0) expect(b.cuda.reason).to.not.match(/^no usable CUDA device: CUDA driver version is insufficient/);
      return;
    }
    expect(b.cuda.deviceCount).to.equal(0);
    expect(b.cuda.reason).to.equal('no CUDA driver or GPU found on this machine (libcuda.so.1 is not installed)');
  });

  it('picks the best GEMM kernel for this CPU, and RECURRENT_ISA forces the portable one', () => {
    expect(['avx512', 'avx2', 'baseline']).to.include(backends().cpu.isa);
    const forced = execFileSync(process.execPath, ['-e', "console.log(require('node-gyp-build')('.').backends().cpu.isa)"], {
      cwd: path.join(__dirname, '..'), env: { ...process.env, RECURRENT_ISA: 'baseline' },
    });
    expect(forced.toString().trim()).to.equal('baseline');
  });

  it('a failed load says which platform, what was tried and what to do', () => {
    const fs = require('node:fs') as typeof import('node:fs');
    const os = require('node:os') as typeof import('node:os');
    const root = path.join(__dirname, '..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-noaddon-'));
    try {
      // the package without any binary: no build/, no prebuilds/
      fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
      fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
      const probe = "try { require('./dist/core/native.js'); } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }";
      const env = { ...process.env };
      delete env.RECURRENT_ADDON; // (set by npm run test:asan)
      const out = JSON.parse(execFileSync(process.execPath, ['-e', probe], { cwd: dir, env }).toString());
      expect(out.code).to.equal('ERR_NATIVE_LOAD');
      expect(out.message).to.include(`${process.platform}-${process.arch}`);
      expect(out.message).to.include(`Node-API ${process.versions.napi}`);
      expect(out.message).to.include(path.join(dir, 'prebuilds'));
      expect(out.message).to.include('npm install --build-from-source');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reused (cached) block comes back zero-filled, in sync and async mode', async () => {
    const n = 1 << 16; // 256 KB: served by the caching allocator
    for (const asyncMode of [false, true]) {
      const dirty = new native.Storage(n);
      dirty.write(new Float32Array(n).fill(NaN), 0);
      dirty.dispose(); // back to the cache
      native.setAsync(asyncMode);
      let fresh: InstanceType<typeof native.Storage>;
      try {
        fresh = new native.Storage(n);
      } finally {
        native.setAsync(false);
      }
      await native.synchronize();
      const values = fresh.read(0, n);
      expect(values.every((v) => v === 0), `async ${asyncMode}`).to.equal(true);
    }
  });

  it('Storage owns zeroed float32 memory, copies in and out, and refuses use after dispose', () => {
    const s = new native.Storage(5);
    expect(Array.from(s.read(0, 5))).to.deep.equal([0, 0, 0, 0, 0]);
    s.write(new Float32Array([1, 2, 3]), 2);
    expect(Array.from(s.read(1, 4))).to.deep.equal([0, 1, 2, 3]);
    expect(() => s.write(new Float32Array(4), 2)).to.throw(RangeError);
    expect(() => s.read(4, 2)).to.throw(RangeError);
    s.dispose();
    expect(s.disposed).to.equal(true);
    expect(() => s.read(0, 1)).to.throw(TypeError);
  });

  it('re-checks bounds natively: out-of-range spans throw instead of touching memory', () => {
    const a = new native.Storage(4);
    const b = new native.Storage(4);
    const c = new native.Storage(4);
    expect(() => native.gemm(false, false, 2, 2, 3, 1, a, 0, 3, b, 0, 2, 0, c, 0, 2, 1, 0, 0, 0)).to.throw(RangeError);
    expect(() => native.stridedCopy(a, 0, [1], b, 2, [1], [4], false)).to.throw(RangeError);
    expect(() => native.layerForward(2, 2, 1, 1, 2, 1, a, a, a, null, a, null, null, null, [a, a, null, null])).to.throw(RangeError);
    // a layer's rows of stacked state buffers: (D, B, H) = 2 floats from stateOffset, inside the buffer
    const gates = new native.Storage(8 * 2); // LSTM, T = 1, B = 1, I = 1, H = 2: 8 x 1 and 8 x 2 weights
    const state = new native.Storage(4);
    const [y, x, wIh] = [new native.Storage(2), new native.Storage(1), new native.Storage(8)];
    const forward = (offset: number) => () =>
      native.layerForward(2, 1, 1, 1, 2, 1, y, state, state, null, x, null, null, null, [wIh, gates, null, null], offset);
    expect(forward(2)).not.to.throw();
    expect(forward(3)).to.throw(RangeError, /cN|hN/);
    expect(forward(-1)).to.throw(RangeError, /stateOffset/);
    expect(() => native.embeddingForward(a, b, Int32Array.from([0, 7]), 2, 2)).to.throw(RangeError);
    expect(() => native.unary(0, {} as never, a, 1)).to.throw(TypeError);
  });
});

describe('the floors of lib/ (scripts/check-layers.js)', () => {
  it('pass as they are; an import that reaches up a floor, or a cycle at load time, fails the check, named', () => {
    const script = path.join(__dirname, '..', 'scripts', 'check-layers.js');
    expect(execFileSync(process.execPath, [script], { encoding: 'utf8' })).to.match(/none reaches up a floor/);
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-layers-'));
    try {
      fs.cpSync(path.join(__dirname, '..', 'lib'), copy, { recursive: true });
      fs.appendFileSync(path.join(copy, 'core', 'shape.ts'), "\nimport type { Module } from '../nn/module';\n");
      const result = spawnSync(process.execPath, [script, copy], { encoding: 'utf8' });
      expect(result.status).to.equal(1);
      expect(result.stderr).to.match(/lib\/core\/shape\.ts:\d+ imports \.\.\/nn\/module: core\/ sits below nn\//);
      // and two files that need each other at load time (a type-only import is no such need)
      fs.writeFileSync(path.join(copy, 'core', 'shape.ts'), fs.readFileSync(path.join(__dirname, '..', 'lib', 'core', 'shape.ts'), 'utf8') + "\nimport { Tensor } from './tensor';\nexport const tensorClass = Tensor;\n");
      const cyclic = spawnSync(process.execPath, [script, copy], { encoding: 'utf8' });
      expect(cyclic.status).to.equal(1);
      expect(cyclic.stderr).to.match(/an import cycle at load time: .*lib\/core\/shape\.ts/);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe('the codes and layouts shared with the kernels', () => {
  it('lib/core/native.ts names every op, cell and optimizer code, and each hyperparameter order, as the addon does', () => {
    const reported = native.nativeCodes();
    const lower = (e: Record<string, string | number>) => Object.fromEntries(Object.entries(e).filter(([, v]) => typeof v === 'number').map(([k, v]) => [k.toLowerCase(), v]));
    expect(lower(UnaryOp as never)).to.deep.equal(reported.unary);
    expect(lower(BinaryOp as never)).to.deep.equal(reported.binary);
    expect(Object.fromEntries(Object.entries(lower(CellKind as never)).map(([k, v]) => [k.replace(/^rnn(tanh|relu)$/, 'rnn_$1'), v]))).to.deep.equal(reported.cell);
    expect(Object.fromEntries(Object.entries(OPTIMIZERS).map(([name, o]) => [name, o.code]))).to.deep.equal(reported.optimizer);
    expect(Object.fromEntries(Object.entries(OPTIMIZERS).map(([name, o]) => [name, [...o.hyper]]))).to.deep.equal(reported.hyper);
  });
});

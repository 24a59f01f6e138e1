/**
 * The CUDA backend. Where no GPU is usable these tests are pending (mocha lists them as
 * such), never passed. tensor.to('cuda') / module.to('cuda') explain why CUDA is not
 * available on every machine.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LSTM, Tensor, backends, getFloat32MatmulPrecision, setFloat32MatmulPrecision } from '../lib/index';
import { pendingWithoutCuda } from './helpers';

describe('CUDA: availability', () => {
  it("to('cpu') is the tensor itself; without a usable GPU, to('cuda') throws ERR_CUDA_UNAVAILABLE with the reason", function () {
    const usable = backends().cuda.deviceCount > 0;
    if (usable) this.skip(); // test/37 covers 'cuda' where it works
    const t = Tensor.ones([2]);
    expect(t.to('cpu')).to.equal(t);
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 3 });
    expect(lstm.to('cpu')).to.equal(lstm);
    for (const attempt of [() => t.to('cuda'), () => lstm.to('cuda'), () => Tensor.from([1, 2], [2], { device: 'cuda' })]) {
      try {
        attempt();
        expect.fail('expected an error');
      } catch (error) {
        expect((error as { code: string }).code).to.equal('ERR_CUDA_UNAVAILABLE');
        expect((error as Error).message).to.match(/Cannot create a tensor on 'cuda': .+/);
        const cuda = backends().cuda;
        if (cuda.reason) expect((error as Error).message).to.include(cuda.reason);
      }
    }
    expect(() => t.to('tpu' as never)).to.throw(TypeError, /'cpu' or 'cuda'/);
  });
});

describe('CUDA: device API on any machine', () => {
  it("modules report their device; setFloat32MatmulPrecision validates and leaves CPU results unchanged", () => {
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 3 });
    expect(lstm.device).to.equal('cpu');
    expect(getFloat32MatmulPrecision()).to.equal('highest');
    expect(() => setFloat32MatmulPrecision('low' as never)).to.throw(TypeError, /'highest', 'high' or 'medium'/);
    const a = Tensor.randn([64, 48]);
    const b = Tensor.randn([48, 40]);
    const fp32 = a.matmul(b).toArray();
    setFloat32MatmulPrecision('high');
    try {
      expect(getFloat32MatmulPrecision()).to.equal('high');
      expect(Array.from(a.matmul(b).toArray())).to.deep.equal(Array.from(fp32)); // TF32 is a GPU option only
    } finally {
      setFloat32MatmulPrecision('highest');
    }
  });
});

describe('CUDA: kernels on a GPU', function () {
  this.timeout(600_000);
  before(function () {
    pendingWithoutCuda(this, 'CUDA tests');
  });

  it('the GEMM and the layer (every cell, ragged, bidirectional) match the double reference (C++ cuda_tests)', () => {
    const root = path.join(__dirname, '..');
    const exe = path.join(root, 'build', 'ctest', 'cuda_tests');
    if (!fs.existsSync(exe)) {
      execFileSync('cmake', ['-S', '.', '-B', 'build/ctest', '-DCMAKE_BUILD_TYPE=Release'], { cwd: root, stdio: 'inherit' });
      execFileSync('cmake', ['--build', 'build/ctest', '-j', '4'], { cwd: root, stdio: 'inherit' });
    }
    const out = execFileSync(exe, { encoding: 'utf8' });
    expect(out).to.include('all CUDA kernel comparisons passed');
  });
});

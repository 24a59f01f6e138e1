/**
 * Forecasting monthly atmospheric CO2 at Mauna Loa (vega-datasets' co2-concentration.csv):
 * train on the early years, forecast the last two years in one shot, and compare with
 * the seasonal-naive baseline (the last observed year, repeated). Writes a chart.
 *
 *   npx tsx examples/co2-forecast.ts
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TimeSeriesForecaster, lineChartSvg, seed } from '../lib/index';

const HORIZON = 24;
const LOOKBACK = 48;

function loadMonthly(): { months: string[]; co2: number[] } {
  const csv = fs.readFileSync(path.join(path.dirname(require.resolve('vega-datasets')), '..', 'data', 'co2-concentration.csv'), 'utf8');
  const rows = csv.trim().split('\n').slice(1).map((line) => {
    const [date, value] = line.split(',');
    return { date, value: Number(value) };
  });
  // one value per calendar month; gaps in the record are filled by linear interpolation
  const index = (date: string) => Number(date.slice(0, 4)) * 12 + Number(date.slice(5, 7)) - 1;
  const first = index(rows[0].date);
  const last = index(rows[rows.length - 1].date);
  const co2 = new Array<number>(last - first + 1).fill(NaN);
  for (const r of rows) co2[index(r.date) - first] = r.value;
  for (let i = 0; i < co2.length; ++i) {
    if (!Number.isNaN(co2[i])) continue;
    let j = i;
    while (Number.isNaN(co2[j])) ++j;
    for (let k = i; k < j; ++k) co2[k] = co2[i - 1] + ((co2[j] - co2[i - 1]) * (k - i + 1)) / (j - i + 1);
  }
  const months = co2.map((_, i) => {
    const m = first + i;
    return `${Math.floor(m / 12)}-${String((m % 12) + 1).padStart(2, '0')}-01`;
  });
  return { months, co2 };
}

async function main(): Promise<void> {
  const { months, co2 } = loadMonthly();
  const split = co2.length - HORIZON;
  // a second input series: the month of the year as an angle (two channels), known in advance
  const phase = months.map((m) => (2 * Math.PI * (Number(m.slice(5, 7)) - 1)) / 12);
  const channels = [co2, phase.map(Math.sin), phase.map(Math.cos)];
  const train = channels.map((c) => c.slice(0, split));

  seed(7);
  const forecaster = new TimeSeriesForecaster({ lookback: LOOKBACK, horizon: HORIZON, hiddenSize: 64 });
  const started = performance.now();
  const history = await forecaster.train(train, { epochs: 60, batchSize: 32, lr: 3e-3, seed: 7 });
  const seconds = (performance.now() - started) / 1000;
  const forecast = forecaster.predict(train);
  const truth = co2.slice(split);
  const naive = truth.map((_, h) => co2[split - 12 * Math.ceil((h + 1) / 12) + h]);

  const rmse = (p: number[]) => Math.sqrt(p.reduce((s, v, i) => s + (v - truth[i]) ** 2, 0) / p.length);
  const mae = (p: number[]) => p.reduce((s, v, i) => s + Math.abs(v - truth[i]), 0) / p.length;
  console.log(`Mauna Loa CO2, ${months[0].slice(0, 7)} to ${months[months.length - 1].slice(0, 7)} (${co2.length} months)`);
  console.log(`trained on ${split} months in ${seconds.toFixed(1)} s (${history.epochs} epochs, validation MSE ${history.valLoss.at(-1)?.toFixed(4)} in scaled units)`);
  console.log(`forecast of the last ${HORIZON} months (${months[split].slice(0, 7)} to ${months[months.length - 1].slice(0, 7)}):`);
  console.log('  method            RMSE (ppm)   MAE (ppm)');
  console.log(`  LSTM forecaster   ${rmse(forecast).toFixed(3).padStart(10)}   ${mae(forecast).toFixed(3).padStart(9)}`);
  console.log(`  seasonal naive    ${rmse(naive).toFixed(3).padStart(10)}   ${mae(naive).toFixed(3).padStart(9)}`);

  const shown = 72;
  const from = co2.length - shown;
  const svg = await lineChartSvg([
    { name: 'observed', points: co2.slice(from).map((y, i) => ({ x: months[from + i], y })) },
    { name: 'LSTM forecast', points: forecast.map((y, h) => ({ x: months[split + h], y })) },
    { name: 'seasonal naive', points: naive.map((y, h) => ({ x: months[split + h], y })) },
  ], { title: 'Mauna Loa CO2: 24-month forecast', xTitle: 'month', yTitle: 'CO2 (ppm)', temporal: true });
  const out = path.join(__dirname, 'output', 'co2-forecast.svg');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, svg);
  console.log(`chart: ${path.relative(process.cwd(), out)}`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});

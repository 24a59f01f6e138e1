#!/usr/bin/env node
'use strict';
require('../dist/apps/cli.js').main(process.argv).catch((error) => {
  console.error(`recurrent: ${error && error.message ? error.message : error}`);
  process.exitCode = 1;
});

'use strict';
// Cronium runtime helpers for Node.js: file based, in $CRONIUM_JOB_DIR.
const fs = require('fs');
const path = require('path');

const KEY = /^[A-Za-z0-9_.-]+$/;

function file(...parts) {
  return path.join(process.env.CRONIUM_JOB_DIR || '/cronium/job', ...parts);
}

function checkKey(key) {
  if (typeof key !== 'string' || !KEY.test(key) || key === '.' || key === '..') {
    throw new Error(`cronium: invalid variable key ${JSON.stringify(key)} (allowed: A-Z a-z 0-9 _ . -)`);
  }
}

/** The job's input, parsed from JSON. */
function input() {
  return JSON.parse(fs.readFileSync(file('input.json'), 'utf8'));
}

/** The event: {id, name, runId, jobId, attempt}. */
function event() {
  return JSON.parse(fs.readFileSync(file('event.json'), 'utf8'));
}

/** Sets the job's output (any JSON-serialisable value). */
function output(value) {
  fs.writeFileSync(file('output'), JSON.stringify(value === undefined ? null : value));
}

/** A variable's value (set in this run, else from the snapshot), or undefined. */
function getVariable(key) {
  checkKey(key);
  for (const folder of ['variables-set', 'variables']) {
    try {
      return fs.readFileSync(file(folder, key), 'utf8');
    } catch (err) {
      if (err.code !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

/** Sets a variable; non-strings are stored as JSON. */
function setVariable(key, value) {
  checkKey(key);
  fs.writeFileSync(file('variables-set', key), typeof value === 'string' ? value : JSON.stringify(value));
}

/** Sets the condition that workflow edges test. */
function setCondition(value) {
  if (typeof value !== 'boolean') throw new TypeError('cronium: condition must be true or false');
  fs.writeFileSync(file('condition'), value ? 'true' : 'false');
}

module.exports = { input, output, event, getVariable, setVariable, setCondition };

// The official `openai` npm client against a running nindub server (used by tests/test_serve.c).
// Env: OPENAI_DIR (folder where `npm install openai` ran), BASE_URL (http://host:port/v1), MODEL.
'use strict';
const path = require('path');
const mod = require(require.resolve('openai', { paths: [path.resolve(process.env.OPENAI_DIR || '.')] }));
const OpenAI = mod.OpenAI || mod.default || mod;

function check(cond, what) {
  if (!cond) { console.error('openai client: FAILED: ' + what); process.exit(1); }
}

async function main() {
  const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
  const model = process.env.MODEL;
  const messages = [{ role: 'user', content: 'Tell me a story' }];

  const r = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
  check(r.object === 'chat.completion', 'object');
  check(typeof r.choices[0].message.content === 'string', 'content');
  check(['stop', 'length'].includes(r.choices[0].finish_reason), 'finish_reason');
  check(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, 'usage');

  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content || '';
      finish = chunk.choices[0].finish_reason || finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === r.choices[0].message.content, 'streamed text equals the non-streamed text (greedy)');
  check(finish !== null && usage && usage.completion_tokens === r.usage.completion_tokens, 'stream finish/usage');

  const js = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'A person as JSON' }], max_tokens: 120,
    response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: {
      type: 'object', additionalProperties: false, required: ['name', 'age'],
      properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer' } } } } } });
  if (js.choices[0].finish_reason === 'stop') {
    const v = JSON.parse(js.choices[0].message.content);
    check(typeof v.name === 'string' && Number.isInteger(v.age), 'json_schema output: ' + js.choices[0].message.content);
  }

  let status = 0;
  try { await client.chat.completions.create({ model: 'no-such-model', messages }); }
  catch (e) { status = e.status; }
  check(status === 404, 'unknown model -> 404, got ' + status);
  console.log('openai client: all ok');
}
main().catch((e) => { console.error('openai client: FAILED: ' + (e && e.stack || e)); process.exit(1); });

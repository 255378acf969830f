// Answer questions with transformers.js, as a Node app would, offline.
// argv: node_modules folder, folder holding the model folder, model folder name, questions JSON ([{id, question, context}]).
// Prints {id: answer} as JSON.
const fs = require("fs");

const [nodeModules, modelsRoot, modelName, questionsFile] = process.argv.slice(2);
const { env, pipeline } = require(require.resolve("@huggingface/transformers", { paths: [nodeModules] }));

(async () => {
  env.allowRemoteModels = false;
  env.localModelPath = modelsRoot;
  const answerer = await pipeline("question-answering", modelName);
  const answers = {};
  for (const q of JSON.parse(fs.readFileSync(questionsFile, "utf8"))) {
    answers[q.id] = (await answerer(q.question, q.context)).answer;
  }
  process.stdout.write(JSON.stringify(answers));
})().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});

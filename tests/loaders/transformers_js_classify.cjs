// Classify texts with transformers.js's text-classification pipeline, as a Node app would, offline.
// argv: node_modules folder, folder holding the model folder, model folder name, texts JSON ([string]).
// Prints {"labels": the model's id2label in id order, "top": the top label of each text} as JSON.
const fs = require("fs");

const [nodeModules, modelsRoot, modelName, textsFile] = process.argv.slice(2);
const { env, pipeline } = require(require.resolve("@huggingface/transformers", { paths: [nodeModules] }));

(async () => {
  env.allowRemoteModels = false;
  env.localModelPath = modelsRoot;
  const classifier = await pipeline("text-classification", modelName);
  const id2label = classifier.model.config.id2label;
  const labels = Object.keys(id2label).sort((a, b) => Number(a) - Number(b)).map((id) => id2label[id]);
  const top = [];
  for (const text of JSON.parse(fs.readFileSync(textsFile, "utf8"))) {
    top.push((await classifier(text))[0].label);
  }
  process.stdout.write(JSON.stringify({ labels, top }));
})().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});

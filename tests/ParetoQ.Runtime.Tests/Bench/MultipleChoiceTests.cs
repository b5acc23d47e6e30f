using System.Text.Json;
using ParetoQ.Bench;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// <c>paretoq-bench mc</c> on real questions (the Brown-corpus cloze file) with a LLaMA-vocabulary model: each choice's
/// score must equal its log-likelihood computed here from the model's logits, and accuracy must count the argmaxes.
/// </summary>
public sealed class MultipleChoiceTests
{
    private static string TinyModel(TempDir dir)
    {
        HfCheckpointWriter.Write(dir.File("hf"), "mobilellm", HfCheckpointWriter.TinyMobileLlm(), HfWeights.Snapped,
            WeightFormat.Q2Seq, pytorchBin: false, ConverterTests.LlamaTokenizer(), seed: 3);
        HfConverter.Convert(dir.File("hf"), dir.File("m.pq"), new ConversionOptions());
        return dir.File("m.pq");
    }

    [Fact]
    public void Choice_scores_are_log_likelihoods_after_the_context_and_accuracy_counts_the_best()
    {
        using var dir = new TempDir();
        string pq = TinyModel(dir);
        string questions = TestData.Path("brown/cloze.jsonl");
        var items = MultipleChoice.Read(questions);
        Assert.Equal(400, items.Count);
        Assert.All(items, i => Assert.Equal(4, i.Choices.Count));

        using var model = LanguageModel.Load(pq, new CpuBackendOptions { Threads = 1 });
        var tokenizer = Tokenizers.FromFile(model.File, model.Config.VocabSize);
        using var session = new Session(model, new SessionOptions { AllLogits = true, ContextLength = 128 });
        var scores = MultipleChoice.Score(session, tokenizer, items.Take(10)).ToList();

        // Independently: all logits of context+choice at once, log-softmax in double over the choice's tokens.
        using var check = new Session(model,
            new SessionOptions { AllLogits = true, ContextLength = 128, MaxBatch = 128 });
        int vocab = model.Config.VocabSize;
        foreach (var s in scores)
            for (int c = 0; c < s.Item.Choices.Count; c++)
            {
                int[] ids = tokenizer.Encode(s.Item.Context + s.Item.Choices[c], addBos: true);
                int from = tokenizer.Encode(s.Item.Context, addBos: true).Length;
                var logits = new float[ids.Length * vocab];
                check.Reset();
                check.Forward(ids, logits);
                double expected = 0;
                for (int j = from; j < ids.Length; j++)
                {
                    var row = logits.AsSpan((j - 1) * vocab, vocab);
                    double max = double.NegativeInfinity, sum = 0;
                    foreach (float l in row) max = Math.Max(max, l);
                    foreach (float l in row) sum += Math.Exp(l - max);
                    expected += row[ids[j]] - max - Math.Log(sum);
                }
                Assert.True(Math.Abs(s.LogLikelihoods[c] - expected) <= 1e-3 * Math.Abs(expected),
                    $"line {s.Item.Line} choice {c}: {s.LogLikelihoods[c]} vs {expected}");
                Assert.True(expected < 0);
            }

        var run = ProgramRunner.Run("paretoq-bench", "", [], "mc", "--jsonl", questions, "--model", pq, "--limit", "10",
            "--context", "128", "--json");
        Assert.True(run.Exit == 0, run.Err);
        using var json = JsonDocument.Parse(run.Out);
        Assert.Equal(10, json.RootElement.GetProperty("questions").GetInt32());
        Assert.Equal(scores.Count(s => s.Picked == s.Item.Label) / 10.0,
            json.RootElement.GetProperty("acc").GetDouble(), 9);
        Assert.Equal(scores.Count(s => s.PickedNormalized == s.Item.Label) / 10.0,
            json.RootElement.GetProperty("acc_norm").GetDouble(), 9);
        Assert.Equal(0.25, json.RootElement.GetProperty("chance").GetDouble(), 9);
    }

    [Theory]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 2}",
        ":1: label 2 is not a choice index (0..1)")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\"], \"label\": 0}", ":1: needs at least 2 choices")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0, \"answer\": 1}",
        ":1: unexpected or repeated field 'answer'")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \"\"], \"label\": 0}",
        ":1: every choice must be a non-empty string")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"]}", ":1: needs \"context\"")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 1.5}", ":1: label must be an integer")]
    [InlineData("[1, 2]", ":1: not a JSON object")]
    [InlineData("{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0}\n{\"context\": ",
        ":2: the line is not valid JSON")]
    [InlineData("{\"context\": \"a\\ud800\", \"choices\": [\" b\", \" c\"], \"label\": 0}",
        ":1: the line holds a string that is not text at context (invalid UTF-8 or an unpaired UTF-16 surrogate")]
    [InlineData("\n\n", "holds no questions")]
    public void Bad_question_files_are_refused_naming_the_line(string content, string message)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("q.jsonl"), content);
        var e = Assert.Throws<InvalidDataException>(() => MultipleChoice.Read(dir.File("q.jsonl")));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Invalid_utf8_and_questions_longer_than_the_context_are_errors_not_crashes()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("bad.jsonl"),
            [.. "{\"context\": \"a"u8, 0xC3, 0x28, .. "\", \"choices\": [\" b\", \" c\"], \"label\": 0}"u8]);
        Assert.Contains(":1: not valid UTF-8",
            Assert.Throws<InvalidDataException>(() => MultipleChoice.Read(dir.File("bad.jsonl"))).Message);

        string pq = TinyModel(dir);
        string longContext = string.Join(' ', Enumerable.Repeat("word", 200));
        File.WriteAllText(dir.File("long.jsonl"),
            JsonSerializer.Serialize(new { context = longContext, choices = new[] { " yes", " no" },
            label = 0 }) + "\n");
        var run = ProgramRunner.Run("paretoq-bench", "", [], "mc", "--jsonl", dir.File("long.jsonl"), "--model", pq,
            "--context", "64");
        Assert.Equal(1, run.Exit);
        Assert.Contains("more than the context length 64", run.Err);
        run = ProgramRunner.Run("paretoq-bench", "", [], "mc", "--jsonl", dir.File("bad.jsonl"), "--model", pq);
        Assert.Equal(1, run.Exit);
        Assert.Contains("not valid UTF-8", run.Err);
    }
}

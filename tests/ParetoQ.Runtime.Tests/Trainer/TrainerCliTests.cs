using System.Globalization;
using System.Text.Json;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// CI's smoke train through the real command line: tokenize Brown-corpus text with the LLaMA-2 tokenizer, pretrain
/// the tiny model for a few steps (the loss must fall), QAT it to 2 bits, export both ways, and run the exports.
/// </summary>
public sealed class TrainerCliTests
{
    private static (int Exit, string Out, string Err) Train(params string[] args)
        => ProgramRunner.Run("paretoq-train", "", [], args);

    private static double[] Losses(string metrics) =>
        [.. File.ReadAllLines(metrics).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble())];

    [Fact]
    public void Tokenize_pretrain_QAT_export_and_run()
    {
        using var dir = new TempDir();
        File.WriteAllLines(dir.File("text.txt"), File.ReadLines(TestData.Path("brown/text.txt")).Take(1500));
        File.WriteAllLines(dir.File("eval.txt"), File.ReadLines(TestData.Path("brown/text.txt")).Skip(5000).Take(10));
        var run = Train("data", "--text", dir.File("text.txt"), "--tokenizer", TestData.Path("llama2/tokenizer.json"),
            "-o", dir.File("data"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Matches(@"^1500 documents: \d+ training and \d+ validation tokens", run.Out);

        run = Train("pretrain", "--data", dir.File("data"), "-o", dir.File("fp.ckpt"), "--steps", "16", "--seq", "32",
            "--batch", "4", "--warmup", "4", "--lr", "0.01", "--min-lr", "0.001", "--eval-every", "8");
        Assert.True(run.Exit == 0, run.Err);
        double[] losses = Losses(dir.File("fp.jsonl"));
        Assert.Equal(16, losses.Length);
        Assert.True(losses[^3..].Average() < losses[..3].Average() - 0.5, $"loss {losses[0]:F3} → {losses[^1]:F3}");

        run = Train("pretrain", "--data", dir.File("data"), "-o", dir.File("fp.ckpt"), "--steps", "16");
        Assert.Equal(1, run.Exit);
        Assert.Contains("already exist", run.Err);

        run = Train("qat", "--from", dir.File("fp.ckpt"), "--bits", "2", "--data", dir.File("data"), "-o",
            dir.File("q2.ckpt"), "--steps", "4", "--seq", "48", "--batch", "2", "--distill", "0.5");
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("projections q2_seq", run.Out);

        run = Train("export", "--checkpoint", dir.File("q2.ckpt"), "-o", dir.File("q2.pq"));
        Assert.True(run.Exit == 0, run.Err);
        // The exported model imports back as a full-precision starting point for another QAT run.
        run = Train("import", "--model", dir.File("q2.pq"), "-o", dir.File("imported.ckpt"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("imported", run.Out);
        run = Train("qat", "--from", dir.File("imported.ckpt"), "--bits", "1.58", "--data", dir.File("data"), "-o",
            dir.File("t.ckpt"), "--steps", "1", "--seq", "16", "--batch", "1");
        Assert.True(run.Exit == 0, run.Err);
        run = Train("import", "--model", dir.File("q2.pq"), "-o", dir.File("imported.ckpt"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("imported.ckpt already exists (--force replaces it)", run.Err);
        run = Train("import", "--model", dir.File("missing.pq"), "-o", dir.File("other.ckpt"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("missing.pq", run.Err);
        run = Train("export", "--checkpoint", dir.File("fp.ckpt"), "--ptq", "1.58", "-o", dir.File("ptq.pq"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("round-to-nearest 1.58-bit", run.Out);

        var generate = ProgramRunner.Run("paretoq-run", "", [], "--model", dir.File("q2.pq"), "--prompt",
            "The jury said", "-n", "8", "--temperature", "0");
        Assert.True(generate.Exit == 0, generate.Err);
        foreach (string model in new[] { "q2.pq", "ptq.pq" })
        {
            var ppl = ProgramRunner.Run("paretoq-run", "", [], "--model", dir.File(model), "--perplexity",
                dir.File("eval.txt"), "--context", "64");
            Assert.True(ppl.Exit == 0, ppl.Err);
            double value = double.Parse(System.Text.RegularExpressions.Regex.Match(ppl.Out,
                @"^perplexity ([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
            Assert.InRange(value, 10, 32000 * 4);
        }
        run = Train("chart", "--metrics", dir.File("fp.jsonl"), dir.File("q2.jsonl"), "-o", dir.File("loss.png"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("4 series", run.Out); // training and validation of both runs
        File.WriteAllText(dir.File("ppl.csv"), "series,x,y\nQAT,1,300\nQAT,2,200\nPTQ,2,900\n");
        run = Train("chart", "--points", dir.File("ppl.csv"), "--x-label", "bits per weight", "-o",
            dir.File("ppl.png"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("4 series", run.Out); // a line and its markers per series
        File.WriteAllText(dir.File("bad.jsonl"), "{\"step\":1,\"loss\":2.5,\"seconds\":1}\n{\"step\":2}\n");
        run = Train("chart", "--metrics", dir.File("bad.jsonl"), "-o", dir.File("bad.png"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("bad.jsonl:2: not a metrics line", run.Err);
        File.WriteAllText(dir.File("bad.csv"), "series,x,y\nQAT,one,300\n");
        run = Train("chart", "--points", dir.File("bad.csv"), "-o", dir.File("bad.png"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("bad.csv:2: expected series,x,y", run.Err);
        var inspect = ProgramRunner.Run("paretoq-convert", "", [], "inspect", dir.File("q2.pq"));
        Assert.Contains("q2_seq", inspect.Out);
        Assert.Contains("tool paretoq-train", inspect.Out);
    }

    /// <summary>QAT from a model its authors trained: stories260K from its llama2.c file and its GGUF, its own
    /// vocabulary for the data, 2-bit QAT whose loss falls, the export run by the runtime.</summary>
    [SharedDataFact]
    public void Stories260K_imports_from_llama2c_and_gguf_and_QATs_on_its_own_tokenizer()
    {
        using var dir = new TempDir();
        string Stories(string name) => SharedData.Path(Path.Combine("stories260K", name));
        var run = Train("import", "--model", Stories("stories260K.bin"), "--tokenizer", Stories("tok512.bin"), "-o",
            dir.File("fp.ckpt"));
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("5 layers, dim 64, vocabulary 512", run.Out);
        run = Train("import", "--model", Stories("stories260K.gguf"), "-o", dir.File("gguf.ckpt"));
        Assert.True(run.Exit == 0, run.Err);
        run = Train("import", "--model", Stories("stories260K.bin"), "-o", dir.File("none.ckpt"));
        Assert.Equal(2, run.Exit);
        Assert.Contains("--tokenizer", run.Err);

        // The text, tokenized with the model's own 512-piece vocabulary (carried by a converted .pq).
        var convert = ProgramRunner.Run("paretoq-convert", "", [], Stories("stories260K.gguf"), "-o",
            dir.File("stories.pq"));
        Assert.True(convert.Exit == 0, convert.Err);
        // Training text: the real sample, and stories the full-precision model writes itself (the data-free route).
        run = Train("sample", "--model", dir.File("stories.pq"), "--documents", "24", "--max-tokens", "128", "--seed",
            "7", "-o", dir.File("sampled.jsonl"));
        Assert.True(run.Exit == 0, run.Err);
        string[] sampled = [.. TrainingText.Documents(dir.File("sampled.jsonl"))];
        Assert.Equal(24, sampled.Length);
        Assert.All(sampled, story => Assert.False(string.IsNullOrWhiteSpace(story)));
        Assert.True(sampled.Count(story => story.Contains("Once upon a time", StringComparison.Ordinal)) >= 12,
            string.Join("\n", sampled.Take(3)));
        Assert.Contains(sampled, story => story.Trim().Contains('\n')); // stories keep their paragraphs
        Assert.All(sampled, story => Assert.False(char.IsWhiteSpace(story[0]), story)); // no dummy-prefix space
        run = Train("sample", "--model", dir.File("stories.pq"), "--documents", "24", "--max-tokens", "128", "--seed",
            "7", "-o", dir.File("again.jsonl"));
        Assert.Equal(File.ReadAllBytes(dir.File("sampled.jsonl")), File.ReadAllBytes(dir.File("again.jsonl")));
        run = Train("sample", "--model", dir.File("stories.pq"), "--documents", "1", "-o", dir.File("sampled.jsonl"));
        Assert.Equal(1, run.Exit);
        Assert.Contains("already exists (--force replaces it)", run.Err);
        run = Train("sample", "--model", dir.File("stories.pq"), "--documents", "1", "-o", dir.File("sampled.txt"));
        Assert.Equal(2, run.Exit);
        Assert.Contains("must end in .jsonl", run.Err);
        File.WriteAllText(dir.File("text.txt"), File.ReadAllText(Stories("tinystories-sample.txt"))
            .Replace("<|endoftext|>", "").Replace("\n\n", "\n"));
        run = Train("data", "--text", dir.File("text.txt"), dir.File("sampled.jsonl"), "--tokenizer",
            dir.File("stories.pq"), "-o", dir.File("data"), "--validation-every", "5");
        Assert.True(run.Exit == 0, run.Err);
        Assert.Contains("(vocabulary 512, BOS 1)", run.Out);
        Assert.True(File.Exists(dir.File("data/tokenizer.pq")));

        run = Train("qat", "--from", dir.File("fp.ckpt"), "--bits", "2", "--data", dir.File("data"), "-o",
            dir.File("q2.ckpt"), "--steps", "12", "--seq", "64", "--batch", "2", "--lr", "0.002", "--warmup", "2");
        Assert.True(run.Exit == 0, run.Err);
        double[] losses = Losses(dir.File("q2.jsonl"));
        Assert.True(losses[^3..].Average() < losses[..3].Average(), $"loss {losses[0]:F3} → {losses[^1]:F3}");
        run = Train("export", "--checkpoint", dir.File("q2.ckpt"), "-o", dir.File("q2.pq"));
        Assert.True(run.Exit == 0, run.Err);
        var generate = ProgramRunner.Run("paretoq-run", "", [], "--model", dir.File("q2.pq"), "--prompt",
            "Once upon a time", "-n", "16", "--temperature", "0");
        Assert.True(generate.Exit == 0, generate.Err);
        Assert.NotEmpty(generate.Out.Trim());

        // A dozen QAT steps already leave round-to-nearest 2-bit far behind on held-out text.
        run = Train("export", "--checkpoint", dir.File("fp.ckpt"), "--ptq", "2", "--tokenizer",
            dir.File("data/tokenizer.pq"), "-o", dir.File("ptq2.pq"));
        Assert.True(run.Exit == 0, run.Err);
        double Perplexity(string model)
        {
            var ppl = ProgramRunner.Run("paretoq-run", "", [], "--model", dir.File(model), "--perplexity",
                dir.File("data/val.txt"), "--context", "128", "--kv-cache", "f32");
            Assert.True(ppl.Exit == 0, ppl.Err);
            return double.Parse(System.Text.RegularExpressions.Regex.Match(ppl.Out, @"^perplexity ([\d.]+)")
                .Groups[1].Value, CultureInfo.InvariantCulture);
        }
        double qat = Perplexity("q2.pq"), ptq = Perplexity("ptq2.pq");
        Assert.True(qat < ptq / 2, $"2-bit QAT {qat:F2}, PTQ {ptq:F2}");
    }
}

using System.Text.RegularExpressions;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The one error contract, program by program, against each class of hostile input found when the programs were
/// attacked: one line on stderr naming the problem, no stack trace, no "internal error", exit 1 for a bad input and 2
/// for bad usage, and nothing hangs (each run has the runner's time limit).
/// </summary>
public sealed class ErrorContractTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _model;
    private readonly byte[] _modelBytes;

    public ErrorContractTests()
    {
        _model = _dir.File("good.pq");
        TestModelGenerator.Write(_model, TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq, WeightFormat.I8Row,
            seed: 5);
        _modelBytes = File.ReadAllBytes(_model);
    }

    public void Dispose() => _dir.Dispose();

    private static void AssertOneLine((int Exit, string Out, string Err) r, int exit, string named)
    {
        string[] lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"stderr has {lines.Length} lines:\n{r.Err}");
        Assert.DoesNotContain("internal error", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("(Parameter '", r.Err);
        Assert.Contains(named, lines[0]);
        Assert.True(r.Exit == exit, $"exit {r.Exit}, expected {exit}: {r.Err}");
    }

    private static (int Exit, string Out, string Err) Run(string program, params string[] args) =>
        ProgramRunner.Run(program, "", [], args);

    private string Pq(string name, Func<string, string> editMetadata)
    {
        string path = _dir.File(name);
        File.WriteAllBytes(path, PqBytes.WithMetadata(_modelBytes, editMetadata));
        return path;
    }

    private static string ReplaceFirst(string text, string pattern, string replacement)
    {
        var regex = new Regex(pattern);
        Assert.Matches(regex, text);
        return regex.Replace(text, replacement, 1);
    }

    [Fact]
    public void A_lone_surrogate_escape_is_a_format_error_in_every_strict_json_reader()
    {
        string pq = Pq("surrogate.pq", m => ReplaceFirst(m, "\"tool\": \"", "\"tool\": \"\\ud800"));
        AssertOneLine(Run("paretoq-run", "--model", pq, "--prompt", "Hi"), 1, "unpaired UTF-16 surrogate");
        AssertOneLine(Run("paretoq-convert", "verify", pq), 1, "unpaired UTF-16 surrogate");
        string questions = _dir.File("q.jsonl");
        File.WriteAllText(questions, "{\"context\": \"a\", \"choices\": [\" b\", \" c\"], \"label\": 0}\n");
        AssertOneLine(Run("paretoq-bench", "mc", "--model", pq, "--jsonl", questions), 1, "unpaired UTF-16 surrogate");

        var hf = HfDirectory("hf-surrogate", pytorchBin: false);
        string config = Path.Combine(hf, "config.json");
        File.WriteAllText(config, ReplaceFirst(File.ReadAllText(config), "\"llama4_text\"", "\"llama4_text\\udc00\""));
        AssertOneLine(Run("paretoq-convert", hf, "-o", _dir.File("out.pq")), 1, "unpaired UTF-16 surrogate");
        Assert.False(File.Exists(_dir.File("out.pq")));
    }

    [Theory]
    [InlineData("\"bos_id\": \\d+", "\"bos_id\": 268435456", "bos_id")]
    [InlineData("\"eos_ids\": \\[\\s*\\d+", "\"eos_ids\": [2147483647", "eos_ids")]
    [InlineData("\"special_tokens\": \\{\\s*(\"[^\"]+\"): \\d+", "\"special_tokens\": { $1: 1073741824",
        "special token")]
    [InlineData("\"special_tokens\": \\{\\s*(\"[^\"]+\"): \\d+", "\"special_tokens\": { $1: 100000",
        "outside the model's vocabulary")]
    public void Token_ids_are_checked_before_anything_is_sized_by_them(string pattern, string replacement,
        string named)
    {
        string pq = Pq("ids.pq", m => ReplaceFirst(m, pattern, replacement));
        AssertOneLine(Run("paretoq-run", "--model", pq, "--prompt", "Hi"), 1, named);
    }

    [Fact]
    public void Torch_storage_sizes_that_overflow_and_pickles_that_grow_are_refused()
    {
        var hf = HfDirectory("hf-torch", pytorchBin: true);
        string bin = Path.Combine(hf, "pytorch_model.bin");
        // 2^62 + 16 float32 elements: × 4 bytes wraps to the member's 64 bytes.
        var pickle = TorchCheckpointWriter.StateDictPickle([("model.norm.weight", SourceDType.F32, "0",
            (1L << 62) + 16, [16])]);
        File.WriteAllBytes(bin, TorchZip(pickle, new byte[64]));
        AssertOneLine(Run("paretoq-convert", hf, "-o", _dir.File("out.pq")), 1, "holds 64 bytes");

        // A state dict followed by 300,000 one-byte MEMOIZE opcodes.
        File.WriteAllBytes(bin, TorchZip([0x80, 2, (byte)'}', .. Enumerable.Repeat((byte)0x94, 300_000), (byte)'.'],
            new byte[64]));
        AssertOneLine(Run("paretoq-convert", hf, "-o", _dir.File("out.pq")), 1, "memo entries");
        Assert.False(File.Exists(_dir.File("out.pq")));
    }

    private static byte[] TorchZip(byte[] pickle, byte[] storage) => TorchCheckpointWriter.Zip([
        ("archive/data.pkl", pickle), ("archive/data/0", storage), ("archive/byteorder", "little"u8.ToArray()),
        ("archive/version", "3\n"u8.ToArray())]);

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.NegativeInfinity, "-infinity")]
    public void Nan_and_infinite_weights_are_refused_at_conversion(float bad, string shown)
    {
        var written = HfCheckpointWriter.Write(_dir.File("hf-nan"), "llama4_text", TestModelGenerator.MobileLlmPro(),
            HfWeights.FullPrecision, default, pytorchBin: false, HfCheckpointWriter.ByteLevelTiktokenFiles(), seed: 3);
        var tensors = written.Tensors.ToList();
        var poisoned = tensors[^1];
        float[] values = (float[])poisoned.Values.Clone();
        values[5] = bad;
        tensors[^1] = poisoned with { DType = SourceDType.F32, Values = values };
        SafetensorsWriter.Write(Path.Combine(written.Directory, SafetensorsCheckpoint.SingleFile), tensors);
        AssertOneLine(Run("paretoq-convert", written.Directory, "-o", _dir.File("out.pq")), 1,
            $"tensor '{poisoned.Name}': element 5 is {shown}; a checkpoint with NaN or infinite weights cannot be converted");
        Assert.False(File.Exists(_dir.File("out.pq")));
    }

    [Fact]
    public void Files_that_are_not_regular_files_are_named_and_never_block()
    {
        string fifo = _dir.File("fifo");
        Assert.Equal(0, System.Diagnostics.Process.Start("mkfifo", fifo).WaitForExitCode());
        string folder = _dir.File("folder");
        Directory.CreateDirectory(folder);
        AssertOneLine(Run("paretoq-run", "--model", fifo, "--prompt", "Hi"), 1, "not a regular file");
        AssertOneLine(Run("paretoq-run", "--model", folder, "--prompt", "Hi"), 1, "is a directory");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--perplexity", fifo), 1, "not a regular file");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--perplexity", "/dev/zero"), 1, "not a regular file");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--perplexity", folder), 1, "is a directory");
        AssertOneLine(Run("paretoq-convert", "verify", fifo), 1, "not a regular file");
        AssertOneLine(Run("paretoq-bench", "mc", "--model", _model, "--jsonl", fifo), 1, "not a regular file");

        var hf = HfDirectory("hf-fifo", pytorchBin: false);
        File.Delete(Path.Combine(hf, "config.json"));
        Assert.Equal(0, System.Diagnostics.Process.Start("mkfifo", Path.Combine(hf, "config.json")).WaitForExitCode());
        AssertOneLine(Run("paretoq-convert", hf, "-o", _dir.File("out.pq")), 1, "not a regular file");
    }

    [Fact]
    public void Missing_files_are_named_as_given_without_absolute_paths()
    {
        var r = Run("paretoq-run", "--model", "no-such.pq", "--prompt", "Hi");
        AssertOneLine(r, 1, "no-such.pq: does not exist");
        Assert.DoesNotContain(Environment.CurrentDirectory, r.Err);
        AssertOneLine(Run("paretoq-bench", "mc", "--model", "no-such.pq", "--jsonl", "q.jsonl"), 1, "does not exist");
        AssertOneLine(Run("paretoq-convert", "inspect", "no-such.pq"), 1, "no-such.pq: does not exist");
    }

    [Fact]
    public void Option_values_out_of_range_are_usage_errors()
    {
        AssertOneLine(Run("paretoq-run", "--model", _model, "--prompt", "Hi", "--threads", "1000"), 2,
            "--threads 1000");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--prompt", "Hi", "--max-tokens", "-5"), 2,
            "--max-tokens -5");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--prompt", "Hi", "--top-p", "3"), 2, "top-p 3");
        AssertOneLine(Run("paretoq-run", "--model", _model, "--prompt", " "), 2, "the prompt is empty");
        AssertOneLine(Run("paretoq-bench", "kernels", "--threads", "1000"), 2, "--threads 1000");
        AssertOneLine(Run("paretoq-bench", "model", "--preset", "bogus"), 2, "unknown model preset 'bogus'");
        AssertOneLine(Run("paretoq-train", "pretrain", "--data", _dir.Path, "--model", "bogus", "--steps", "1", "-o",
            _dir.File("x.ckpt")), 2, "'bogus'");
    }

    [Fact]
    public void Max_tokens_at_the_int_limit_stops_when_the_context_is_full()
    {
        var r = Run("paretoq-run", "--model", _model, "--prompt", "Hi", "--max-tokens", "2147483647", "--context", "24",
            "--temperature", "0");
        Assert.True(r.Exit == 0, r.Err);
        Assert.Contains("stop: ContextFull", r.Err);
    }

    [Fact]
    public void Foreign_formats_and_existing_outputs_say_what_to_do()
    {
        string gguf = _dir.File("model.gguf");
        File.WriteAllBytes(gguf, [.. "GGUF"u8, .. new byte[100]]);
        AssertOneLine(Run("paretoq-run", "--model", gguf, "--prompt", "Hi"), 1,
            "is a GGUF file (llama.cpp's format), not a .pq file: convert it with paretoq-convert");
        AssertOneLine(Run("paretoq-convert", gguf, "-o", _dir.File("from-gguf.pq")), 1, "has GGUF version 0");

        var hf = HfDirectory("hf-exists", pytorchBin: false);
        File.WriteAllText(_dir.File("taken.pq"), "precious");
        AssertOneLine(Run("paretoq-convert", hf, "-o", _dir.File("taken.pq")), 1,
            "already exists (--force replaces it)");
        Assert.Equal("precious", File.ReadAllText(_dir.File("taken.pq")));

        string jsonl = _dir.File("bad.jsonl");
        File.WriteAllText(jsonl, "{\"context\": \"a\",\n");
        AssertOneLine(Run("paretoq-bench", "mc", "--model", _model, "--jsonl", jsonl), 1, "bad.jsonl:1");
    }

    [Fact]
    public void Shipped_models_carry_no_build_machine_paths()
    {
        foreach (string model in Directory.GetFiles(Path.Combine(TestData.RepoRoot(), "models"), "*.pq"))
        {
            using var file = Runtime.Format.PqFile.Open(model);
            var values = file.Provenance.Settings.Values.Append(file.Provenance.Source);
            Assert.All(values, v => Assert.False(Path.IsPathRooted(v), $"{Path.GetFileName(model)}: '{v}'"));
        }
    }

    private string HfDirectory(string name, bool pytorchBin) =>
        HfCheckpointWriter.Write(_dir.File(name), "llama4_text", TestModelGenerator.MobileLlmPro(),
            HfWeights.FullPrecision, default, pytorchBin, HfCheckpointWriter.ByteLevelTiktokenFiles(), seed: 3).Directory;
}

internal static class ProcessExtensions
{
    public static int WaitForExitCode(this System.Diagnostics.Process p)
    {
        p.WaitForExit();
        return p.ExitCode;
    }
}

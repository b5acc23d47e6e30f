using System.Diagnostics;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

// paretoq-modelgen: writes a deterministic random-weight test model, then loads it back and runs greedy decoding over
// token ids, printing what the engine did. Usage:
//   paretoq-modelgen [--arch mobilellm|mobilellm-pro] [--format q2_seq|ternary|binary|q3_row|q4_row|q4_g32|i8_row|f32]
//                    [--seed N] [--tokens N] [-o FILE.pq] [--force]
// An existing output file is replaced only with --force.
string arch = "mobilellm-pro", formatName = "q2_seq", output = "test-model.pq";
int seed = 1, tokens = 32;
bool force = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--arch": arch = Next(); break;
        case "--format": formatName = Next(); break;
        case "--seed": seed = int.Parse(Next()); break;
        case "--tokens": tokens = int.Parse(Next()); break;
        case "-o": output = Next(); break;
        case "--force": force = true; break;
        default:
            Console.Error.WriteLine($"error: unknown option '{args[i]}'");
            return 2;
    }
}
if (!WeightFormats.TryParse(formatName, out var format) || !WeightFormats.IsKnown(format))
{
    Console.Error.WriteLine($"error: unknown format '{formatName}'");
    return 2;
}
var config = arch switch
{
    "mobilellm" => TestModelGenerator.MobileLlm(),
    "mobilellm-pro" => TestModelGenerator.MobileLlmPro(),
    _ => null,
};
if (config is null)
{
    Console.Error.WriteLine($"error: unknown architecture '{arch}' (mobilellm or mobilellm-pro)");
    return 2;
}

if (File.Exists(output) && !force)
{
    Console.Error.WriteLine($"error: {output} already exists (use --force to replace it)");
    return 1;
}
try
{
    TestModelGenerator.Write(output, config, format, WeightFormat.F32, seed, overwrite: force);
    using var model = LanguageModel.Load(output);
    var f = model.File;
    Console.WriteLine($"wrote {output}: {f.FileLength} bytes, {f.Tensors.Count} tensors, {config.Architecture}, projections {formatName}, provenance '{f.Provenance.Source}'");
    using var session = new Session(model);
    int[] prompt = [f.Tokenizer.BosId, 72, 101, 108, 108, 111]; // <|begin_of_text|> "Hello" as byte tokens
    var clock = Stopwatch.StartNew();
    var logits = session.Forward(prompt);
    double prefill = clock.Elapsed.TotalSeconds;
    var generated = new List<int>();
    clock.Restart();
    for (int i = 0; i < tokens; i++)
    {
        int next = 0;
        for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[next]) next = v;
        generated.Add(next);
        logits = session.Forward([next]);
    }
    double decode = clock.Elapsed.TotalSeconds;
    Console.WriteLine($"greedy tokens: {string.Join(' ', generated)}");
    Console.WriteLine($"prompt {prompt.Length} tokens, prefill {prompt.Length / prefill:F0} tok/s; {tokens} generated, decode {tokens / decode:F0} tok/s; KV cache {session.KvCacheBytes} bytes ({session.KvCacheType}), backend {model.Backend.Name}");
    return 0;
}
catch (Exception e) when (e is PqFormatException or ModelConfigException or IOException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}

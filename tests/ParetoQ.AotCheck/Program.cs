// Each probe is the smallest program that shows one NativeAOT (ILC) defect the code base works around. A probe runs on
// its own thread with a deadline, because the defects seen so far hang rather than crash. The program prints, per
// probe, whether the defect is present under this compiler, and exits 0 either way; with --expect-fixed it exits 1
// while a defect is still present, which is how to tell that a workaround can go after an SDK update.
//
// Under the JIT every probe passes; `dotnet run` therefore proves nothing, and CI runs the published native binary.
using System.Diagnostics;

var probes = new (string Name, string Workaround, Func<bool> Run)[]
{
    ("`value is T t` with T = bool? on a boxed bool",
        "GgufCheckpoint reads metadata through typed Bool/Double/Get<class> readers (issue 36, G1)",
        () => As<bool?>(Boxed(true)) ?? false),
};

bool expectFixed = args.Contains("--expect-fixed");
int present = 0;
foreach (var (name, workaround, run) in probes)
{
    bool? result = null;
    var thread = new Thread(() => result = run()) { IsBackground = true };
    var clock = Stopwatch.StartNew();
    thread.Start();
    bool finished = thread.Join(TimeSpan.FromSeconds(5));
    bool defect = !finished || result != true;
    if (defect) present++;
    string verdict = !finished ? "defect present (hung for 5 s)" : result == true ? "fine" : "defect present (wrong result)";
    Console.WriteLine($"{name}: {verdict}, {clock.Elapsed.TotalMilliseconds:F0} ms");
    if (defect) Console.WriteLine($"  worked around in: {workaround}");
}
Console.WriteLine($"{probes.Length} probes, {present} defects present under this compiler " +
    $"({(System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported ? "JIT" : "NativeAOT")})");
Environment.Exit(expectFixed && present > 0 ? 1 : 0);

// Kept out of line and fed a value the compiler cannot see through, so the type test happens at run time.
static object Boxed(bool value) => Environment.GetCommandLineArgs().Length > 1000 ? 0 : value;

static T? As<T>(object value) => value is T t ? t : throw new InvalidCastException(value.GetType().Name);

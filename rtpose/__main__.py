from rtpose.cli import main

raise SystemExit(main())
